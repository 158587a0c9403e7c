"""The collector's own metrics, served as Prometheus text on /metrics.

Everything refused, truncated or dropped is counted here, so no loss is silent.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import ClassVar

Label = tuple[str, str]
_NO_LABEL: Label = ("", "")


class CollectorTelemetry:
    """Thread-safe counters, summaries (sum and count) and gauges read at scrape time."""

    _COUNTERS: ClassVar[dict[str, str]] = {
        "agentledger_requests_total": "OTLP export requests received, by transport and response status.",
        "agentledger_spans_received_total": "Spans decoded from request bodies.",
        "agentledger_spans_accepted_total": "Spans acknowledged to the sender (in the spool or stored).",
        "agentledger_spans_refused_total": "Spans of requests refused whole (spool full, storage down), by reason.",
        "agentledger_spans_rejected_total": "Spans refused one by one as OTLP partial success, by reason.",
        "agentledger_spans_truncated_total": "Spans stored with something truncated to the limits, by what.",
        "agentledger_spans_exported_total": "Spans delivered, by exporter.",
        "agentledger_export_failures_total": "Export attempts that failed (and will be retried), by exporter.",
        "agentledger_spans_skipped_total": "Spans skipped undelivered (backlog over its bound), by exporter.",
        "agentledger_identity_mismatches_total": "Spans whose claimed agent id differs from the authenticated one.",
        "agentledger_reserved_attributes_stripped_total": (
            "Attributes only the collector may set (tenant, redaction summary) removed from what senders sent,"
            " by where (span, resource, scope)."
        ),
    }
    _SUMMARIES: ClassVar[dict[str, str]] = {
        "agentledger_export_seconds": "Time to deliver one batch, by exporter.",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Label], float] = defaultdict(float)
        self._summaries: dict[tuple[str, Label], list[float]] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def add(self, name: str, amount: float = 1, label: Label = _NO_LABEL) -> None:
        with self._lock:
            self._counters[(name, label)] += amount

    def observe(self, name: str, value: float, label: Label = _NO_LABEL) -> None:
        with self._lock:
            total = self._summaries.setdefault((name, label), [0.0, 0.0])
            total[0] += value
            total[1] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        with self._lock:
            self._gauges[name] = (help_text, read)

    def value(self, name: str, label: Label = _NO_LABEL) -> float:
        with self._lock:
            return self._counters.get((name, label), 0.0)

    def render_prometheus(self) -> str:
        with self._lock:
            counters = dict(self._counters)
            summaries = {key: list(value) for key, value in self._summaries.items()}
            gauges = dict(self._gauges)
        lines: list[str] = []
        for name, help_text in self._COUNTERS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            lines += [
                f"{name}{_labels(label)} {value:g}"
                for (metric, label), value in sorted(counters.items())
                if metric == name
            ]
        for name, help_text in self._SUMMARIES.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
            for (metric, label), (total, count) in sorted(summaries.items()):
                if metric == name:
                    lines.append(f"{name}_sum{_labels(label)} {total:g}")
                    lines.append(f"{name}_count{_labels(label)} {count:g}")
        for name, (help_text, read) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"


def _labels(label: Label) -> str:
    return f'{{{label[0]}="{label[1]}"}}' if label[0] else ""
