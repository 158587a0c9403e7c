"""The collector's own counters, served as Prometheus text on /metrics.

Everything refused or dropped is counted here, so no loss is silent.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import ClassVar


class CollectorTelemetry:
    """Thread-safe monotonic counters keyed by metric name and one optional label pair."""

    _HELP: ClassVar[dict[str, str]] = {
        "agentledger_requests_total": "OTLP export requests received, by outcome.",
        "agentledger_spans_received_total": "Spans decoded from accepted request bodies.",
        "agentledger_spans_accepted_total": "Spans acknowledged to the sender.",
        "agentledger_spans_rejected_total": "Spans refused (partial success), by reason.",
        "agentledger_spans_exported_total": "Spans delivered, by exporter.",
        "agentledger_export_failures_total": "Batches an exporter failed to deliver, by exporter.",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, str], float] = defaultdict(float)

    def add(self, name: str, amount: float = 1, label: tuple[str, str] = ("", "")) -> None:
        with self._lock:
            self._counters[(name, label[0], label[1])] += amount

    def value(self, name: str, label: tuple[str, str] = ("", "")) -> float:
        with self._lock:
            return self._counters.get((name, label[0], label[1]), 0.0)

    def render_prometheus(self) -> str:
        with self._lock:
            snapshot = dict(self._counters)
        lines: list[str] = []
        for name, help_text in self._HELP.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} counter")
            for (metric, label_name, label_value), value in sorted(snapshot.items()):
                if metric != name:
                    continue
                labels = f'{{{label_name}="{label_value}"}}' if label_name else ""
                lines.append(f"{name}{labels} {value:g}")
        return "\n".join(lines) + "\n"
