"""Turns an OTLP ExportTraceServiceRequest into one columnar span batch (Arrow, SPAN_SCHEMA).

This is the only per-span Python loop on the ingest path; everything after it works on columns.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agentledger.collector.config import LimitsConfig
from agentledger.schema import conventions as conv
from agentledger.schema.run_ids import MAX_RUN_ID_BYTES
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


TRUNCATION_MARKER = "…[truncated by agentledger]"


@dataclass(frozen=True)
class Identity:
    """Who sent the request, as the receiver verified it (tenant always; agent id when authenticated)."""

    tenant: str
    agent_id: str = ""


@dataclass(frozen=True)
class DecodedBatch:
    batch: pa.Table
    rejected_spans: int
    rejection_message: str
    # Spans on which the limits cut something, by kind (attribute_value, content, attributes, events, links).
    truncated: dict[str, int]
    identity_mismatches: int


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


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cuts text to at most max_bytes of UTF-8 (marker included), never inside a character."""
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    room = max(0, max_bytes - len(TRUNCATION_MARKER.encode()))
    return encoded[:room].decode("utf-8", errors="ignore") + TRUNCATION_MARKER


class _Limiter:
    """Applies LimitsConfig to one span's values, remembering what it cut."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.cut: set[str] = set()

    def _limit(self, text: str, max_bytes: int, kind: str) -> str:
        if len(text) * 4 <= max_bytes:  # fast path: even all 4-byte characters would fit
            return text
        limited = truncate_utf8(text, max_bytes)
        if limited is not text:
            self.cut.add(kind)
        return limited

    def value(self, text: str) -> str:
        return self._limit(text, self.limits.max_attribute_value_bytes, "attribute_value")

    def content(self, text: str) -> str:
        return self._limit(text, self.limits.max_content_bytes, "content")

    def pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if len(pairs) > self.limits.max_attributes_per_span:
            self.cut.add("attributes")
            pairs = pairs[: self.limits.max_attributes_per_span]
        return [(key, self.value(text)) for key, text in pairs]


_MAP_COLUMNS = frozenset({"attributes", "resource_attributes"})
_MAP_LIST_COLUMNS = frozenset({"event_attributes", "link_attributes"})
_PROMOTED_DEFAULTS = {column: (0 if kind == "int" else "") for _, column, kind in PROMOTED_COLUMNS}


class _Columns:
    """Column lists filled span by span, then turned into Arrow arrays once.

    Promoted attributes are kept per span as a small dict of the columns present and spread into
    columns at the end; maps are built from flat key/value lists. Both keep the per-span work minimal:
    this loop is the hot spot of the ingest path (see benchmarks/ingest.py).
    """

    def __init__(self) -> None:
        skip = set(_PROMOTED_DEFAULTS) | _MAP_COLUMNS | _MAP_LIST_COLUMNS
        self.values: dict[str, list[Any]] = {field.name: [] for field in SPAN_SCHEMA if field.name not in skip}
        self.promoted: list[dict[str, Any]] = []
        self.maps: dict[str, tuple[list[int], list[str], list[str]]] = {
            name: ([0], [], []) for name in _MAP_COLUMNS | _MAP_LIST_COLUMNS
        }
        self.map_list_offsets: dict[str, list[int]] = {name: [0] for name in _MAP_LIST_COLUMNS}

    def add_map(self, column: str, pairs: list[tuple[str, str]]) -> None:
        offsets, keys, values = self.maps[column]
        for key, value in pairs:
            keys.append(key)
            values.append(value)
        offsets.append(len(keys))

    def add_map_list(self, column: str, maps: list[list[tuple[str, str]]]) -> None:
        for pairs in maps:
            self.add_map(column, pairs)
        list_offsets = self.map_list_offsets[column]
        list_offsets.append(list_offsets[-1] + len(maps))

    def _map_array(self, column: str) -> pa.Array:
        offsets, keys, values = self.maps[column]
        return pa.MapArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string())
        )

    def to_table(self) -> pa.Table:
        arrays: list[pa.Array] = []
        for field in SPAN_SCHEMA:
            name = field.name
            if name in _MAP_COLUMNS:
                arrays.append(self._map_array(name))
            elif name in _MAP_LIST_COLUMNS:
                arrays.append(pa.ListArray.from_arrays(pa.array(self.map_list_offsets[name], pa.int32()),
                                                       self._map_array(name)))  # fmt: skip
            elif name in _PROMOTED_DEFAULTS:
                default = _PROMOTED_DEFAULTS[name]
                arrays.append(pa.array([row.get(name, default) for row in self.promoted], field.type))
            else:
                arrays.append(pa.array(self.values[name], field.type))
        return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)


def decode_request(
    request: ExportTraceServiceRequest, identity: Identity, limits: LimitsConfig | None = None
) -> DecodedBatch:
    """Decodes every valid span, stamping the verified identity and applying the limits.

    A span without a valid trace or span id, beyond max_spans_per_request, or with a run id longer than
    MAX_RUN_ID_BYTES is rejected and counted.
    """
    limits = limits or LimitsConfig()
    columns = _Columns()
    invalid = over_limit = long_run_id = mismatches = decoded = 0
    truncated: dict[str, int] = {}
    for resource_spans in request.resource_spans:
        resource_attributes = resource_spans.resource.attributes
        resource_limiter = _Limiter(limits)
        resource_map = resource_limiter.pairs(_plain_map(resource_attributes))
        # Attributes kept on the resource (one process per agent or per run) count for each of its spans.
        resource_promoted = {
            kv.key: kv.value for kv in resource_attributes if kv.key in _PROMOTED_KEYS or kv.key == conv.AGENT_RUN_ID
        }
        service_name = next((any_value_text(kv.value) for kv in resource_attributes if kv.key == "service.name"), "")
        for scope_spans in resource_spans.scope_spans:
            scope = (scope_spans.scope.name, scope_spans.scope.version)
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    invalid += 1
                    continue
                if decoded >= limits.max_spans_per_request:
                    over_limit += 1
                    continue
                if _run_id_too_long(span, resource_promoted):
                    long_run_id += 1
                    continue
                decoded += 1
                limiter = _Limiter(limits)
                limiter.cut |= resource_limiter.cut
                mismatches += _append_span(
                    columns, span, identity, limiter, resource_map, resource_promoted, service_name, scope
                )
                for kind in limiter.cut:
                    truncated[kind] = truncated.get(kind, 0) + 1
    problems = []
    if invalid:
        problems.append(f"{invalid} span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes")
    if over_limit:
        problems.append(f"{over_limit} span(s) rejected: a request may carry at most {limits.max_spans_per_request}")
    if long_run_id:
        problems.append(f"{long_run_id} span(s) rejected: {conv.AGENT_RUN_ID} is longer than {MAX_RUN_ID_BYTES} bytes")
    rejected = invalid + over_limit + long_run_id
    return DecodedBatch(columns.to_table(), rejected, "; ".join(problems), truncated, mismatches)


def _run_id_too_long(span: Span, resource_promoted: dict[str, AnyValue]) -> bool:
    """A run id is an identity: cut to the attribute limit it would name another run, so it is refused."""
    value = resource_promoted.get(conv.AGENT_RUN_ID)
    for kv in span.attributes:
        if kv.key == conv.AGENT_RUN_ID:
            value = kv.value  # the last one wins, as in _append_span
    return value is not None and len(any_value_text(value).encode("utf-8", "replace")) > MAX_RUN_ID_BYTES


_COLUMN_OF = {key: (column, kind) for key, column, kind in PROMOTED_COLUMNS}


def _append_span(
    columns: _Columns,
    span: Span,
    identity: Identity,
    limiter: _Limiter,
    resource_map: list[tuple[str, str]],
    resource_promoted: dict[str, AnyValue],
    service_name: str,
    scope: tuple[str, str],
) -> bool:
    """Appends one span; returns whether it claims another agent than the authenticated one."""
    out = columns.values
    raw_promoted = dict(resource_promoted)
    others: list[tuple[str, str]] = []
    kv: KeyValue
    for kv in span.attributes:
        key = kv.key
        if key in _PROMOTED_KEYS or key == conv.AGENT_RUN_ID:
            raw_promoted[key] = kv.value
        elif key != _TENANT_KEY:  # the tenant is the collector's to say, never the agent's
            others.append((key, any_value_text(kv.value)))
    others = limiter.pairs(others)
    promoted: dict[str, Any] = {}
    run_id = ""
    for key, value in raw_promoted.items():
        if key == conv.AGENT_RUN_ID:
            run_id = any_value_text(value)  # never cut: decode_request refused it if too long
            continue
        column, kind = _COLUMN_OF[key]
        if kind == "int":
            promoted[column] = _int_of(value)
        elif kind == "content":
            promoted[column] = limiter.content(any_value_text(value))
        else:
            promoted[column] = limiter.value(any_value_text(value))
    openinference_kind = next((v for k, v in others if k == conv.OPENINFERENCE_SPAN_KIND), "")
    promoted["entry_type"] = derive_span_type(
        promoted.get("entry_type", ""), promoted.get("operation", ""), openinference_kind
    )
    claimed_agent = promoted.get("agent_id", "")
    mismatch = bool(identity.agent_id and claimed_agent and claimed_agent != identity.agent_id)
    columns.promoted.append(promoted)

    start = span.start_time_unix_nano
    end = max(span.end_time_unix_nano, start)
    out["tenant"].append(identity.tenant)
    out["run_id"].append(run_id)
    out["trace_id"].append(span.trace_id.hex())
    out["span_id"].append(span.span_id.hex())
    out["parent_span_id"].append(span.parent_span_id.hex())
    out["start_time"].append(start)
    out["end_time"].append(end)
    out["duration_ns"].append(end - start)
    out["name"].append(limiter.value(span.name))
    out["kind"].append(_SPAN_KINDS.get(span.kind, "UNSPECIFIED"))
    out["status_code"].append(_STATUS_CODES.get(span.status.code, "UNSET"))
    out["status_message"].append(limiter.value(span.status.message))
    out["service_name"].append(service_name)
    out["scope_name"].append(scope[0])
    out["scope_version"].append(scope[1])
    out["verified_agent_id"].append(identity.agent_id)
    out["identity_mismatch"].append(mismatch)
    columns.add_map("attributes", others)
    columns.add_map("resource_attributes", resource_map)
    limits = limiter.limits
    events: Sequence[Span.Event] = span.events
    if len(events) > limits.max_events_per_span:
        limiter.cut.add("events")
        events = events[: limits.max_events_per_span]
    links: Sequence[Span.Link] = span.links
    if len(links) > limits.max_links_per_span:
        limiter.cut.add("links")
        links = links[: limits.max_links_per_span]
    out["event_times"].append([event.time_unix_nano for event in events])
    out["event_names"].append([limiter.value(event.name) for event in events])
    columns.add_map_list("event_attributes", [limiter.pairs(_plain_map(event.attributes)) for event in events])
    out["link_trace_ids"].append([link.trace_id.hex() for link in links])
    out["link_span_ids"].append([link.span_id.hex() for link in links])
    columns.add_map_list("link_attributes", [limiter.pairs(_plain_map(link.attributes)) for link in links])
    out["truncated"].append(sorted(limiter.cut))
    return mismatch
