"""Turns an OTLP ExportTraceServiceRequest into one columnar span batch (Arrow, SPAN_SCHEMA).

This is the only per-span Python loop on the ingest path; everything after it works on columns. Resource
attributes are decoded once per resource and spread to its spans by Arrow (take), never per span in Python.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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
# Keys only the collector may set: a sender's value is removed wherever it appears (span, resource or
# scope attributes) and counted, so nothing stored can pass for the collector's own word.
RESERVED_KEYS: frozenset[str] = frozenset({conv.AGENTLEDGER_TENANT_ID, conv.AGENTLEDGER_REDACTION_SUMMARY})
# DateTime64(9) stores nanoseconds since the epoch in an Int64: OTLP's unsigned times at or past 2^63
# (2262-04-11T23:47:16.854775807Z) cannot be stored.
MAX_TIME_UNIX_NANO = 2**63 - 1
# What a span's fixed columns (ids as hex, times, kind, status, identity...) take in the batch, beyond
# its encoded size: used only to estimate the decoded size before decoding.
_SPAN_OVERHEAD_BYTES = 256


TRUNCATION_MARKER = "…[truncated by agentledger]"


@dataclass(frozen=True)
class Identity:
    """Who sent the request, as the receiver verified it (tenant always; agent id when authenticated)."""

    tenant: str
    agent_id: str = ""


class DecodedSizeExceeded(ValueError):
    """The request would expand past limits.max_decoded_bytes_per_request; the message is for the sender."""

    def __init__(self, message: str, spans: int) -> None:
        super().__init__(message)
        self.spans = spans


@dataclass(frozen=True)
class DecodedBatch:
    batch: pa.Table
    rejected_spans: int
    rejection_message: str
    # Spans on which the limits cut something, by kind (attribute_value, content, attributes, events,
    # links, end_time).
    truncated: dict[str, int]
    identity_mismatches: int
    # Rejected spans by reason (invalid_or_over_limit, invalid_timestamp); they sum to rejected_spans.
    rejected: dict[str, int] = field(default_factory=dict)
    # Reserved attributes removed, by where they were (span, resource, scope).
    reserved_stripped: dict[str, int] = field(default_factory=dict)


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


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int_of(value: AnyValue) -> int:
    """The value of an Int64 column: 0 (unset) for what is not a number, and for what no Int64 holds (an
    infinite, NaN or huge double, a string of too many digits), rather than failing the whole request."""
    which = value.WhichOneof("value")
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        if not -(2.0**63) <= number < 2.0**63:  # also false for NaN
            return 0
        return int(number)
    if which == "string_value":
        try:
            parsed = int(value.string_value)
        except ValueError:
            return 0
        return parsed if _INT64_MIN <= parsed <= _INT64_MAX else 0
    return 0


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


_MAP_COLUMNS = frozenset({"attributes"})
_MAP_LIST_COLUMNS = frozenset({"event_attributes", "link_attributes"})
_RESOURCE_COLUMN = "resource_attributes"
_PROMOTED_DEFAULTS = {column: (0 if kind == "int" else "") for _, column, kind in PROMOTED_COLUMNS}
_COLUMN_OF = {key: (column, kind) for key, column, kind in PROMOTED_COLUMNS}
_PROMOTED_STRUCT = pa.struct([field for field in SPAN_SCHEMA if field.name in _PROMOTED_DEFAULTS])
# The run id is an envelope column, but the decoder carries it with the promoted values until the end.
_RUN_ID = "run_id"


def _map_array(offsets: list[int], keys: list[str], values: list[str]) -> pa.MapArray:
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(values, pa.string())
    )


def _promote(key: str, value: AnyValue, limiter: _Limiter) -> tuple[str, Any]:
    """The column a promoted attribute goes to, and its value there (limited)."""
    if key == conv.AGENT_RUN_ID:
        return _RUN_ID, any_value_text(value)  # never cut: decode_request refuses it if too long
    column, kind = _COLUMN_OF[key]
    if kind == "int":
        return column, _int_of(value)
    if kind == "content":
        return column, limiter.content(any_value_text(value))
    return column, limiter.value(any_value_text(value))


def _is_promoted(key: str) -> bool:
    return key in _PROMOTED_KEYS or key == conv.AGENT_RUN_ID


@dataclass(frozen=True)
class _Resource:
    """One resource, decoded once for all its spans."""

    pairs: list[tuple[str, str]]
    # Promoted column -> value (the run id under "run_id"); a span's own attributes override them.
    promoted: dict[str, Any]
    service_name: str
    cut: frozenset[str]
    # What one span's copy of this resource takes in the batch.
    decoded_bytes: int


def _decode_resource(attributes: Sequence[KeyValue], limits: LimitsConfig, stripped: dict[str, int]) -> _Resource:
    limiter = _Limiter(limits)
    kept = [kv for kv in attributes if kv.key not in RESERVED_KEYS]
    if len(kept) != len(attributes):
        stripped["resource"] = stripped.get("resource", 0) + len(attributes) - len(kept)
    pairs = limiter.pairs([(kv.key, any_value_text(kv.value)) for kv in kept])
    # Attributes kept on the resource (one process per agent or per run) count for each of its spans.
    promoted = dict(_promote(kv.key, kv.value, limiter) for kv in kept if _is_promoted(kv.key))
    service_name = next((any_value_text(kv.value) for kv in kept if kv.key == "service.name"), "")
    size = sum(len(key) + len(value) for key, value in pairs) + len(service_name)
    size += sum(len(value) if isinstance(value, str) else 8 for value in promoted.values())
    return _Resource(pairs, promoted, service_name, frozenset(limiter.cut), size)


class _Columns:
    """Column lists filled span by span, then turned into Arrow arrays once.

    Promoted attributes are kept per span as a small dict of the columns present and spread into
    columns at the end; maps are built from flat key/value lists (filled by _span_appender). Both keep the
    per-span work minimal: this loop is the hot spot of the ingest path (see benchmarks/ingest_stages.py).
    Resource attributes are one map per resource plus each span's resource index, expanded by Arrow's take
    at the end.
    """

    def __init__(self, resources: list[_Resource]) -> None:
        skip = set(_PROMOTED_DEFAULTS) | _MAP_COLUMNS | _MAP_LIST_COLUMNS | {_RESOURCE_COLUMN}
        self.values: dict[str, list[Any]] = {field.name: [] for field in SPAN_SCHEMA if field.name not in skip}
        self.promoted: list[dict[str, Any]] = []
        self.resources = resources
        self.resource_index: list[int] = []
        self.maps: dict[str, tuple[list[int], list[str], list[str]]] = {
            name: ([0], [], []) for name in _MAP_COLUMNS | _MAP_LIST_COLUMNS
        }
        self.map_list_offsets: dict[str, list[int]] = {name: [0] for name in _MAP_LIST_COLUMNS}

    def _resource_array(self) -> pa.Array:
        offsets, keys, values = [0], [], []
        for resource in self.resources:
            for key, value in resource.pairs:
                keys.append(key)
                values.append(value)
            offsets.append(len(keys))
        per_resource = _map_array(offsets, keys, values)
        return per_resource.take(pa.array(self.resource_index, pa.int32()))

    def to_table(self) -> pa.Table:
        arrays: list[pa.Array] = []
        # One conversion of the per-span dicts (in C++, absent columns as nulls), not one Python pass each.
        promoted = pa.array(self.promoted, _PROMOTED_STRUCT)
        for field_ in SPAN_SCHEMA:
            name = field_.name
            if name == _RESOURCE_COLUMN:
                arrays.append(self._resource_array())
            elif name in _MAP_COLUMNS:
                arrays.append(_map_array(*self.maps[name]))
            elif name in _MAP_LIST_COLUMNS:
                arrays.append(pa.ListArray.from_arrays(pa.array(self.map_list_offsets[name], pa.int32()),
                                                       _map_array(*self.maps[name])))  # fmt: skip
            elif name in _PROMOTED_DEFAULTS:
                arrays.append(pc.fill_null(promoted.field(name), _PROMOTED_DEFAULTS[name]))
            else:
                arrays.append(pa.array(self.values[name], field_.type))
        return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)


def _check_decoded_size(
    request: ExportTraceServiceRequest, resources: list[_Resource], limits: LimitsConfig, encoded_bytes: int | None
) -> None:
    """Refuses, before any span is decoded, a request whose batch would be over the budget: the spans'
    encoded size plus, for each span, its resource's decoded attributes and the fixed columns.

    The spans' encoded size is measured by re-encoding them (ByteSize), as costly as a copy of the request;
    when the request's own binary size is known it bounds that from above (re-encoding a parsed message
    never comes out longer), so the measurement is needed only when the bound is over the budget."""
    budget = limits.max_decoded_bytes_per_request
    if encoded_bytes is not None:
        bound, allowance = encoded_bytes, limits.max_spans_per_request
        for resource_spans, resource in zip(request.resource_spans, resources, strict=True):
            for scope_spans in resource_spans.scope_spans:
                decoded = min(len(scope_spans.spans), allowance)
                allowance -= decoded
                bound += decoded * (resource.decoded_bytes + _SPAN_OVERHEAD_BYTES)
        if bound <= budget:
            return
    estimate = spans = 0
    allowance = limits.max_spans_per_request
    for resource_spans, resource in zip(request.resource_spans, resources, strict=True):
        for scope_spans in resource_spans.scope_spans:
            count = len(scope_spans.spans)
            decoded = min(count, allowance)
            allowance -= decoded
            spans += count
            estimate += scope_spans.ByteSize() + decoded * (resource.decoded_bytes + _SPAN_OVERHEAD_BYTES)
    if estimate > budget:
        raise DecodedSizeExceeded(
            f"the request would expand to about {estimate} bytes once decoded (each span carries a copy of its"
            f" resource attributes), over receivers.otlp.limits.max_decoded_bytes_per_request ({budget});"
            " send fewer spans per request or smaller resource attributes",
            spans,
        )


def _time_problem(span: Span, limits: LimitsConfig) -> str | None:
    if span.start_time_unix_nano == 0:
        return "start_time_unix_nano is unset (0)"
    if span.start_time_unix_nano > MAX_TIME_UNIX_NANO or span.end_time_unix_nano > MAX_TIME_UNIX_NANO:
        return "a timestamp is past 2262-04-11T23:47:16.854775807Z, the latest that can be stored"
    events = span.events
    for index in range(min(len(events), limits.max_events_per_span)):
        if events[index].time_unix_nano > MAX_TIME_UNIX_NANO:
            return "a timestamp is past 2262-04-11T23:47:16.854775807Z, the latest that can be stored"
    return None


def decode_request(
    request: ExportTraceServiceRequest,
    identity: Identity,
    limits: LimitsConfig | None = None,
    encoded_bytes: int | None = None,
) -> DecodedBatch:
    """Decodes every valid span, stamping the verified identity and applying the limits.

    A span without a valid trace or span id, with an impossible timestamp, with a run id longer than
    MAX_RUN_ID_BYTES, or beyond max_spans_per_request, is rejected and counted. Raises
    DecodedSizeExceeded, having decoded no span, when the request would expand past
    max_decoded_bytes_per_request. `encoded_bytes`: the size of the binary protobuf the request was parsed
    from, when known (it spares measuring the request's size again).
    """
    limits = limits or LimitsConfig()
    stripped: dict[str, int] = {}
    resources = [_decode_resource(rs.resource.attributes, limits, stripped) for rs in request.resource_spans]
    _check_decoded_size(request, resources, limits, encoded_bytes)
    columns = _Columns(resources)
    truncated: dict[str, int] = {}
    append = _span_appender(columns, identity, limits, stripped, truncated)
    invalid = over_limit = long_run_id = mismatches = decoded = 0
    time_problems: dict[str, int] = {}
    for resource_number, resource_spans in enumerate(request.resource_spans):
        resource = resources[resource_number]
        for scope_spans in resource_spans.scope_spans:
            # Scope attributes are not stored; a reserved key there is still counted as refused.
            reserved_in_scope = sum(1 for kv in scope_spans.scope.attributes if kv.key in RESERVED_KEYS)
            if reserved_in_scope:
                stripped["scope"] = stripped.get("scope", 0) + reserved_in_scope
            scope = (scope_spans.scope.name, scope_spans.scope.version)
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    invalid += 1
                    continue
                if decoded >= limits.max_spans_per_request:
                    over_limit += 1
                    continue
                problem = _time_problem(span, limits)
                if problem is not None:
                    time_problems[problem] = time_problems.get(problem, 0) + 1
                    continue
                outcome = append(span, resource, resource_number, *scope)
                if outcome == _TOO_LONG_RUN_ID:
                    long_run_id += 1
                    continue
                decoded += 1
                mismatches += outcome
    problems = []
    if invalid:
        problems.append(f"{invalid} span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes")
    if over_limit:
        problems.append(f"{over_limit} span(s) rejected: a request may carry at most {limits.max_spans_per_request}")
    if long_run_id:
        problems.append(f"{long_run_id} span(s) rejected: {conv.AGENT_RUN_ID} is longer than {MAX_RUN_ID_BYTES} bytes")
    problems += [f"{count} span(s) rejected: {problem}" for problem, count in time_problems.items()]
    rejected: dict[str, int] = {}
    if invalid + over_limit + long_run_id:
        rejected["invalid_or_over_limit"] = invalid + over_limit + long_run_id
    bad_times = sum(time_problems.values())
    if bad_times:
        rejected["invalid_timestamp"] = bad_times
    return DecodedBatch(
        columns.to_table(), invalid + over_limit + long_run_id + bad_times, "; ".join(problems), truncated,
        mismatches, rejected, stripped,
    )  # fmt: skip


_TOO_LONG_RUN_ID = -1


def _span_appender(
    columns: _Columns, identity: Identity, limits: LimitsConfig, stripped: dict[str, int], truncated: dict[str, int]
) -> Callable[[Span, _Resource, int, str, str], int]:
    """The per-span step of decode_request: appends one span to `columns` and returns whether it claims
    another agent than the authenticated one (1 or 0), or _TOO_LONG_RUN_ID (appending nothing) when its run
    id is longer than MAX_RUN_ID_BYTES.

    This is the only Python loop over spans and attributes, so everything it touches per span is bound
    once per request here (list appends, limits, lookup tables) rather than looked up per span."""
    out = columns.values
    tenant_append, run_id_append = out["tenant"].append, out["run_id"].append
    trace_id_append, span_id_append = out["trace_id"].append, out["span_id"].append
    parent_append, start_append = out["parent_span_id"].append, out["start_time"].append
    end_append = out["end_time"].append
    duration_append, name_append, kind_append = out["duration_ns"].append, out["name"].append, out["kind"].append
    status_append, status_message_append = out["status_code"].append, out["status_message"].append
    service_append, scope_name_append = out["service_name"].append, out["scope_name"].append
    scope_version_append, verified_append = out["scope_version"].append, out["verified_agent_id"].append
    mismatch_append, truncated_append = out["identity_mismatch"].append, out["truncated"].append
    conversation_append = out["conversation_id"].append
    event_times_append, event_names_append = out["event_times"].append, out["event_names"].append
    link_trace_ids_append, link_span_ids_append = out["link_trace_ids"].append, out["link_span_ids"].append
    promoted_append, resource_index_append = columns.promoted.append, columns.resource_index.append
    attribute_offsets, attribute_keys, attribute_values = columns.maps["attributes"]
    event_maps, link_maps = columns.maps["event_attributes"], columns.maps["link_attributes"]
    event_lists, link_lists = columns.map_list_offsets["event_attributes"], columns.map_list_offsets["link_attributes"]
    max_value, max_content = limits.max_attribute_value_bytes, limits.max_content_bytes
    max_attributes, max_events, max_links = (
        limits.max_attributes_per_span, limits.max_events_per_span, limits.max_links_per_span
    )  # fmt: skip
    tenant, agent_id = identity.tenant, identity.agent_id
    run_id_key, openinference_kind_key = conv.AGENT_RUN_ID, conv.OPENINFERENCE_SPAN_KIND
    column_of, reserved_keys, span_kinds, status_codes = _COLUMN_OF, RESERVED_KEYS, _SPAN_KINDS, _STATUS_CODES

    def limited(text: str, max_bytes: int, kind: str, cut: set[str]) -> str:
        if len(text) * 4 <= max_bytes:  # fast path: even all 4-byte characters would fit
            return text
        shorter = truncate_utf8(text, max_bytes)
        if shorter is not text:
            cut.add(kind)
        return shorter

    def add_maps(maps: tuple[list[int], list[str], list[str]], items: Sequence[Any], cut: set[str]) -> None:
        """The attributes of each event or link as one map each (limited like a span's)."""
        offsets, keys, values = maps
        for item in items:
            attributes = item.attributes
            if len(attributes) > max_attributes:
                cut.add("attributes")
                attributes = attributes[:max_attributes]
            for kv in attributes:
                keys.append(kv.key)
                values.append(limited(any_value_text(kv.value), max_value, "attribute_value", cut))
            offsets.append(len(keys))

    def append(span: Span, resource: _Resource, resource_number: int, scope_name: str, scope_version: str) -> int:
        cut = set(resource.cut)
        promoted: dict[str, Any] = dict(resource.promoted)
        other_keys: list[str] = []
        other_values: list[str] = []
        reserved = 0
        for kv in span.attributes:
            key = kv.key
            if key == run_id_key:
                promoted[_RUN_ID] = any_value_text(kv.value)  # never cut: refused below if too long
            elif key in column_of:
                column, kind = column_of[key]
                value = kv.value
                if kind == "int":
                    promoted[column] = _int_of(value)
                else:
                    text = value.string_value if value.WhichOneof("value") == "string_value" else any_value_text(value)
                    if kind == "content":
                        promoted[column] = limited(text, max_content, "content", cut)
                    else:
                        promoted[column] = limited(text, max_value, "attribute_value", cut)
            elif key in reserved_keys:  # the tenant is the collector's to say, never the agent's
                reserved += 1
            else:
                other_keys.append(key)
                other_values.append(any_value_text(kv.value))
        # The last run id wins; cut to the attribute limit it would name another run, so it is refused.
        run_id: str = promoted.pop(_RUN_ID, "")
        if len(run_id) * 4 > MAX_RUN_ID_BYTES and len(run_id.encode("utf-8", "replace")) > MAX_RUN_ID_BYTES:
            return _TOO_LONG_RUN_ID
        if reserved:
            stripped["span"] = stripped.get("span", 0) + reserved
        if len(other_keys) > max_attributes:
            cut.add("attributes")
            del other_keys[max_attributes:], other_values[max_attributes:]
        openinference_kind = ""
        for index, text in enumerate(other_values):
            if len(text) * 4 > max_value:
                other_values[index] = text = limited(text, max_value, "attribute_value", cut)
            if not openinference_kind and other_keys[index] == openinference_kind_key:
                openinference_kind = text
        attribute_keys.extend(other_keys)
        attribute_values.extend(other_values)
        attribute_offsets.append(len(attribute_keys))
        promoted["entry_type"] = derive_span_type(
            promoted.get("entry_type", ""), promoted.get("operation", ""), openinference_kind
        )
        claimed_agent = promoted.get("agent_id", "")
        mismatch = bool(agent_id and claimed_agent and claimed_agent != agent_id)
        promoted_append(promoted)

        start = span.start_time_unix_nano
        end = span.end_time_unix_nano
        if end < start:  # unset (0) or before the start: stored as a zero-length span, and said so
            end = start
            cut.add("end_time")
        tenant_append(tenant)
        run_id_append(run_id)
        trace_id_append(span.trace_id.hex())
        span_id_append(span.span_id.hex())
        parent_append(span.parent_span_id.hex())
        start_append(start)
        end_append(end)
        duration_append(end - start)
        name_append(limited(span.name, max_value, "attribute_value", cut))
        kind_append(span_kinds.get(span.kind, "UNSPECIFIED"))
        status = span.status
        status_append(status_codes.get(status.code, "UNSET"))
        status_message_append(limited(status.message, max_value, "attribute_value", cut))
        service_append(resource.service_name)
        scope_name_append(scope_name)
        scope_version_append(scope_version)
        verified_append(agent_id)
        mismatch_append(mismatch)
        events: Sequence[Span.Event] = span.events
        if events:
            if len(events) > max_events:
                cut.add("events")
                events = events[:max_events]
            event_times_append([event.time_unix_nano for event in events])
            event_names_append([limited(event.name, max_value, "attribute_value", cut) for event in events])
            add_maps(event_maps, events, cut)
        else:
            event_times_append([])
            event_names_append([])
        event_lists.append(event_lists[-1] + len(events))
        links: Sequence[Span.Link] = span.links
        if links:
            if len(links) > max_links:
                cut.add("links")
                links = links[:max_links]
            link_trace_ids_append([link.trace_id.hex() for link in links])
            link_span_ids_append([link.span_id.hex() for link in links])
            add_maps(link_maps, links, cut)
        else:
            link_trace_ids_append([])
            link_span_ids_append([])
        link_lists.append(link_lists[-1] + len(links))
        if cut:
            truncated_append(sorted(cut))
            for kind in cut:
                truncated[kind] = truncated.get(kind, 0) + 1
        else:
            truncated_append([])
        conversation_append("")
        resource_index_append(resource_number)
        return 1 if mismatch else 0

    return append
