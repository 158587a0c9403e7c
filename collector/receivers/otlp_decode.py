"""Turns an OTLP ExportTraceServiceRequest into one columnar span batch (Arrow, SPAN_SCHEMA).

This is the only per-span Python loop on the ingest path; everything after it works on columns.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentledger.schema import conventions as conv
from agentledger.schema.span_columns import PROMOTED_COLUMNS, SPAN_SCHEMA
from agentledger.schema.span_types import derive_span_type

_SPAN_KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS_CODES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}
# Keys whose values move into typed columns; what the registry promotes, minus what the envelope fills.
_PROMOTED_KEYS = frozenset(key for key, _, _ in PROMOTED_COLUMNS)
_TENANT_KEY = conv.AGENTLEDGER_TENANT_ID


@dataclass(frozen=True)
class DecodedBatch:
    batch: pa.Table
    rejected_spans: int
    rejection_message: str


def any_value_json(value: AnyValue) -> Any:
    """An AnyValue as a JSON-compatible Python value (structure kept for arrays and kvlists)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "array_value":
        return [any_value_json(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value_json(kv.value) for kv in value.kvlist_value.values}
    return None


def any_value_text(value: AnyValue) -> str:
    """An AnyValue as the string stored in the attributes Map: strings as-is, everything else as JSON."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which is None:
        return ""
    return json.dumps(any_value_json(value), ensure_ascii=False, separators=(",", ":"))


def _int_of(value: AnyValue) -> int:
    which = value.WhichOneof("value")
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return int(value.double_value)
    if which == "string_value":
        try:
            return int(value.string_value)
        except ValueError:
            return 0
    return 0


def _plain_map(attributes: Any) -> list[tuple[str, str]]:
    return [(kv.key, any_value_text(kv.value)) for kv in attributes]


class _Columns:
    """Column lists filled span by span, then turned into Arrow arrays once."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {field.name: [] for field in SPAN_SCHEMA}

    def to_table(self) -> pa.Table:
        return pa.Table.from_pydict(self.values, schema=SPAN_SCHEMA)


def decode_request(request: ExportTraceServiceRequest, tenant: str) -> DecodedBatch:
    """Decodes every valid span; a span without a valid trace or span id is rejected and counted."""
    columns = _Columns()
    out = columns.values
    rejected = 0
    for resource_spans in request.resource_spans:
        resource_attributes = resource_spans.resource.attributes
        resource_map = _plain_map(resource_attributes)
        resource_lookup = {kv.key: kv.value for kv in resource_attributes}
        service_name = any_value_text(resource_lookup["service.name"]) if "service.name" in resource_lookup else ""
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            scope_version = scope_spans.scope.version
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    rejected += 1
                    continue
                _append_span(out, span, tenant, resource_map, resource_lookup, service_name, scope_name, scope_version)
    message = f"{rejected} span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes" if rejected else ""
    return DecodedBatch(columns.to_table(), rejected, message)


def _append_span(
    out: dict[str, list[Any]],
    span: Span,
    tenant: str,
    resource_map: list[tuple[str, str]],
    resource_lookup: dict[str, AnyValue],
    service_name: str,
    scope_name: str,
    scope_version: str,
) -> None:
    promoted: dict[str, AnyValue] = {}
    others: list[tuple[str, str]] = []
    kv: KeyValue
    for kv in span.attributes:
        if kv.key in _PROMOTED_KEYS or kv.key == conv.AGENT_RUN_ID:
            promoted[kv.key] = kv.value
        elif kv.key != _TENANT_KEY:  # the tenant is the collector's to say, never the agent's
            others.append((kv.key, any_value_text(kv.value)))
    # Attributes kept on the resource (one process per agent or per run) count for each of its spans.
    for key in _PROMOTED_KEYS:
        if key not in promoted and key in resource_lookup:
            promoted[key] = resource_lookup[key]
    if conv.AGENT_RUN_ID not in promoted and conv.AGENT_RUN_ID in resource_lookup:
        promoted[conv.AGENT_RUN_ID] = resource_lookup[conv.AGENT_RUN_ID]

    start = span.start_time_unix_nano
    end = max(span.end_time_unix_nano, start)
    out["tenant"].append(tenant)
    out["run_id"].append(any_value_text(promoted[conv.AGENT_RUN_ID]) if conv.AGENT_RUN_ID in promoted else "")
    out["trace_id"].append(span.trace_id.hex())
    out["span_id"].append(span.span_id.hex())
    out["parent_span_id"].append(span.parent_span_id.hex())
    out["start_time"].append(start)
    out["end_time"].append(end)
    out["duration_ns"].append(end - start)
    out["name"].append(span.name)
    out["kind"].append(_SPAN_KINDS.get(span.kind, "UNSPECIFIED"))
    out["status_code"].append(_STATUS_CODES.get(span.status.code, "UNSET"))
    out["status_message"].append(span.status.message)
    out["service_name"].append(service_name)
    out["scope_name"].append(scope_name)
    out["scope_version"].append(scope_version)
    for key, column, kind in PROMOTED_COLUMNS:
        value = promoted.get(key)
        if kind == "int":
            out[column].append(_int_of(value) if value is not None else 0)
        else:
            out[column].append(any_value_text(value) if value is not None else "")
    entry_types = out["entry_type"]
    openinference_kind = next((v for k, v in others if k == conv.OPENINFERENCE_SPAN_KIND), "")
    entry_types[-1] = derive_span_type(entry_types[-1], out["operation"][-1], openinference_kind)
    out["attributes"].append(others)
    out["resource_attributes"].append(resource_map)
    out["event_times"].append([event.time_unix_nano for event in span.events])
    out["event_names"].append([event.name for event in span.events])
    out["event_attributes"].append([_plain_map(event.attributes) for event in span.events])
    out["link_trace_ids"].append([link.trace_id.hex() for link in span.links])
    out["link_span_ids"].append([link.span_id.hex() for link in span.links])
    out["link_attributes"].append([_plain_map(link.attributes) for link in span.links])
