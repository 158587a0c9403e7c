"""The collector's own metrics, served as Prometheus text on /metrics.

Everything refused, truncated or dropped is counted here, so no loss is silent.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import ClassVar

# Label pairs flattened: ("exporter", "clickhouse") or ("exporter", "clickhouse", "reason", "VIOLATED_CONSTRAINT").
Label = tuple[str, ...]
_NO_LABEL: Label = ("", "")


class CollectorTelemetry:
    """Thread-safe counters, histograms (cumulative buckets, sum and count) and gauges read at scrape time."""

    _COUNTERS: ClassVar[dict[str, str]] = {
        "agentledger_requests_total": "OTLP export requests received, by transport and response status.",
        "agentledger_spans_received_total": "Spans decoded from request bodies.",
        "agentledger_spans_accepted_total": "Spans acknowledged to the sender (in the spool or stored).",
        "agentledger_spans_refused_total": "Spans of requests refused whole (spool full, storage down), by reason.",
        "agentledger_spans_rejected_total": "Spans refused one by one as OTLP partial success, by reason.",
        "agentledger_spans_truncated_total": "Spans stored with something truncated to the limits, by what.",
        "agentledger_spans_exported_total": "Spans delivered, by exporter.",
        "agentledger_export_failures_total": "Export attempts that failed (retried, or refused for good), by exporter.",
        "agentledger_spans_skipped_total": "Spans skipped undelivered (backlog over its bound), by exporter.",
        "agentledger_spool_quarantined_records_total": "Damaged spool records skipped (spans lost), in quarantine.",
        "agentledger_spool_quarantined_bytes_total": "Bytes of damaged spool records copied to quarantine.",
        "agentledger_spool_torn_tail_records_total": "Records a crash left torn (never acknowledged), cut at start.",
        "agentledger_spool_torn_tail_bytes_total": "Bytes of torn records cut at start, copied to quarantine.",
        "agentledger_spool_write_errors_total": "Spool writes, fsyncs, segment creations the OS refused, by errno.",
        "agentledger_spans_dead_lettered_total": "Spans a destination refused for good, set aside in the dead-letter"
        " store, by exporter and reason.",
        "agentledger_spans_replayed_total": "Dead-lettered spans a replay delivered, by exporter.",
        "agentledger_spans_resent_total": "Spans re-sent identical to their stored copy, dropped (no new link).",
        "agentledger_span_conflicts_total": "Spans re-sent with a stored id but other content, kept apart as"
        " conflicts (stored spans are immutable).",
        "agentledger_identity_mismatches_total": "Spans whose claimed agent id differs from the authenticated one.",
        "agentledger_log_records_received_total": "OTLP log records received.",
        "agentledger_log_records_accepted_total": "GenAI log events acknowledged, stored as rows of their span.",
        "agentledger_log_records_dropped_total": "Log records not stored (answered as partial success), by reason"
        " (not_genai_event, no_span_context).",
        "agentledger_metric_points_dropped_total": "OTLP metric data points received and dropped (no metrics are"
        " stored; answered as rejected).",
        "agentledger_unknown_paths_total": "HTTP requests to a path the OTLP receiver does not serve (404), by method.",
        "agentledger_reserved_attributes_stripped_total": (
            "Attributes only the collector may set (tenant, redaction summary) removed from what senders sent,"
            " by where (span, resource, scope)."
        ),
    }
    _HISTOGRAMS: ClassVar[dict[str, str]] = {
        "agentledger_export_seconds": "Time to deliver one batch, by exporter.",
    }
    # Upper bounds (seconds) of the export-latency buckets: a 20k-span ClickHouse insert takes ~0.5-5 s on
    # two cores, a small batch a few ms, a stalled destination up to the retry back-off.
    HISTOGRAM_BUCKETS: ClassVar[tuple[float, ...]] = (
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    )  # fmt: skip

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Label], float] = defaultdict(float)
        # Per bucket of HISTOGRAM_BUCKETS the observations at most its bound (not cumulative), then +Inf,
        # then the sum.
        self._histograms: dict[tuple[str, Label], list[float]] = {}
        self._gauges: dict[str, tuple[str, dict[Label, Callable[[], float]]]] = {}

    def add(self, name: str, amount: float = 1, label: Label = _NO_LABEL) -> None:
        with self._lock:
            self._counters[(name, label)] += amount

    def observe(self, name: str, value: float, label: Label = _NO_LABEL) -> None:
        slot = bisect.bisect_left(self.HISTOGRAM_BUCKETS, value)
        with self._lock:
            counts = self._histograms.setdefault((name, label), [0.0] * (len(self.HISTOGRAM_BUCKETS) + 2))
            counts[slot] += 1
            counts[-1] += value

    def gauge(self, name: str, help_text: str, read: Callable[[], float], label: Label = _NO_LABEL) -> None:
        """Registers a value read at scrape time; one name may have several labels (one reader each)."""
        with self._lock:
            readers = self._gauges.setdefault(name, (help_text, {}))[1]
            readers[label] = read

    def value(self, name: str, label: Label = _NO_LABEL) -> float:
        with self._lock:
            return self._counters.get((name, label), 0.0)

    def render_prometheus(self) -> str:
        with self._lock:
            counters = dict(self._counters)
            histograms = {key: list(value) for key, value in self._histograms.items()}
            gauges = {name: (help_text, dict(readers)) for name, (help_text, readers) in self._gauges.items()}
        lines: list[str] = []
        for name, help_text in self._COUNTERS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            lines += [
                f"{name}{_labels(label)} {value:g}"
                for (metric, label), value in sorted(counters.items())
                if metric == name
            ]
        for name, help_text in self._HISTOGRAMS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
            for (metric, label), counts in sorted(histograms.items()):
                if metric != name:
                    continue
                cumulative = 0.0
                for bound, count in zip((*self.HISTOGRAM_BUCKETS, math.inf), counts[:-1], strict=True):
                    cumulative += count
                    le = "+Inf" if bound == math.inf else f"{bound:g}"
                    lines.append(f"{name}_bucket{_labels((*label, 'le', le))} {cumulative:g}")
                lines.append(f"{name}_sum{_labels(label)} {counts[-1]:g}")
                lines.append(f"{name}_count{_labels(label)} {cumulative:g}")
        for name, (help_text, readers) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [f"{name}{_labels(label)} {read():g}" for label, read in sorted(readers.items())]
        return "\n".join(lines) + "\n"


def _labels(label: Label) -> str:
    pairs = [(key, value) for key, value in zip(label[0::2], label[1::2], strict=True) if key]
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
