"""GenAI content sent as OTLP log events (the GenAI conventions' event route: `gen_ai.user.message`,
`gen_ai.choice`, `gen_ai.client.inference.operation.details`, ...) turned into span rows of their span.

Each event becomes a zero-length child span of the span it names (parent = its span id, same trace), so it
takes the ingest path spans take (limits, normaliser, redaction, spool, every exporter) and is found by
trace and span id however the log and the span were batched or ordered. Its span id is derived from the
record's content, so a re-sent record replaces itself instead of adding a row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agentledger.collector.receivers.otlp_decode import any_value_json
from agentledger.schema import conventions as conv

EVENT_NAME: Final = "event.name"
# The span attribute that marks an event row and says which log record it came from.
LOG_EVENT_MARKER: Final = "agentledger.log.event"
GENAI_EVENT_PREFIX: Final = "gen_ai."
# Deprecated per-message events -> the content column (as its registry key) they fill, and the role.
_MESSAGE_EVENTS: Final[Mapping[str, tuple[str, str]]] = {
    "gen_ai.system.message": (conv.GEN_AI_INPUT_MESSAGES, "system"),
    "gen_ai.user.message": (conv.GEN_AI_INPUT_MESSAGES, "user"),
    "gen_ai.assistant.message": (conv.GEN_AI_INPUT_MESSAGES, "assistant"),
    "gen_ai.tool.message": (conv.GEN_AI_INPUT_MESSAGES, "tool"),
    "gen_ai.choice": (conv.GEN_AI_OUTPUT_MESSAGES, "assistant"),
}
# Registry keys an event row may carry: content only. The rest (operation, model, tokens) is the span's own,
# and on an event row would make a second prompt entry and count its tokens twice.
_CONTENT_KEYS: Final = frozenset(key for key, (_, kind) in conv.ATTRIBUTE_COLUMNS.items() if kind == "content")
_PROMOTED_KEYS: Final = frozenset(conv.ATTRIBUTE_COLUMNS)


@dataclass(frozen=True)
class LogConversion:
    traces: ExportTraceServiceRequest
    # Records not stored, by reason (not_genai_event, no_span_context).
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def message(self) -> str:
        reasons = {
            "not_genai_event": "are not GenAI events (event name gen_ai.*); agentledger stores no other logs",
            "no_span_context": "carry no trace and span id, so they belong to no span",
        }
        return "; ".join(f"{count} log record(s) dropped: they {reasons[reason]}" for reason, count in
                         sorted(self.dropped.items()))  # fmt: skip


def _event_name(record: LogRecord) -> str:
    if record.event_name:
        return str(record.event_name)
    for kv in record.attributes:
        if kv.key == EVENT_NAME:
            return kv.value.string_value
    return ""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _event_span_id(record: LogRecord, name: str) -> bytes:
    digest = hashlib.sha256()
    for part in (
        record.trace_id,
        record.span_id,
        str(record.time_unix_nano).encode(),
        str(record.observed_time_unix_nano).encode(),
        name.encode(),
        record.body.SerializeToString(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    for kv in record.attributes:
        digest.update(kv.SerializeToString())  # fmt: skip
    span_id = digest.digest()[:8]
    return span_id if any(span_id) else b"\x00" * 7 + b"\x01"


def _event_span(record: LogRecord, name: str) -> Span:
    time = record.time_unix_nano or record.observed_time_unix_nano
    attributes: list[KeyValue] = []
    seen: set[str] = set()
    for kv in record.attributes:
        if kv.key in _PROMOTED_KEYS and kv.key not in _CONTENT_KEYS:
            continue
        attributes.append(kv)
        seen.add(kv.key)
    if EVENT_NAME not in seen:
        attributes.append(KeyValue(key=EVENT_NAME, value=AnyValue(string_value=name)))
    attributes.append(KeyValue(key=LOG_EVENT_MARKER, value=AnyValue(string_value=name)))
    message = _MESSAGE_EVENTS.get(name)
    body = any_value_json(record.body) if record.HasField("body") else None
    if message is not None and body is not None:
        key, role = message
        if key not in seen:
            entry = dict(body) if isinstance(body, dict) else {"content": body}
            if key == conv.GEN_AI_INPUT_MESSAGES:
                entry.setdefault("role", role)
            attributes.append(KeyValue(key=key, value=AnyValue(string_value=_json([entry]))))
    elif body is not None:
        attributes.append(KeyValue(key="event.body", value=AnyValue(string_value=_json(body))))
    return Span(
        trace_id=record.trace_id, span_id=_event_span_id(record, name), parent_span_id=record.span_id, name=name,
        kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=time, end_time_unix_nano=time, attributes=attributes,
    )  # fmt: skip


def logs_to_spans(request: ExportLogsServiceRequest) -> LogConversion:
    """The request's GenAI events as spans (same resources and scopes); other records are counted, not kept."""
    traces = ExportTraceServiceRequest()
    dropped: dict[str, int] = {}
    for resource_logs in request.resource_logs:
        resource_spans = traces.resource_spans.add()
        resource_spans.resource.CopyFrom(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.CopyFrom(scope_logs.scope)
            for record in scope_logs.log_records:
                name = _event_name(record)
                if not name.startswith(GENAI_EVENT_PREFIX):
                    dropped["not_genai_event"] = dropped.get("not_genai_event", 0) + 1
                elif len(record.trace_id) != 16 or len(record.span_id) != 8 or not any(record.span_id):
                    dropped["no_span_context"] = dropped.get("no_span_context", 0) + 1
                else:
                    scope_spans.spans.append(_event_span(record, name))
    return LogConversion(traces, dropped)


def metric_data_points(request: ExportMetricsServiceRequest) -> int:
    """How many data points the request carries (what a metrics refusal reports as rejected)."""
    points = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points += _points(metric)
    return points


def _points(metric: Metric) -> int:
    which = metric.WhichOneof("data")
    if which is None:
        return 0
    return len(getattr(metric, which).data_points)
