"""Turns a spans batch back into an OTLP request that Arize Phoenix renders: OpenInference attributes rebuilt
from our typed and content columns, and our audit columns kept as attributes and in `metadata`.

Phoenix stores span attributes only (not resource attributes), so everything a reviewer needs is on the span.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeAlias

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from agentledger.collector.component import SpanBatch
from agentledger.schema import conventions as conv
from agentledger.schema import openinference as oi

AttributeValue: TypeAlias = str | int | float | bool

PROJECT_ATTRIBUTE: Final = "openinference.project.name"
METADATA_ATTRIBUTE: Final = "metadata"
TOOL_PARAMETERS: Final = "tool.parameters"

# Our timeline type -> the OpenInference span kind Phoenix shows. Approvals and writes have no kind of
# their own; CHAIN is OpenInference's generic step (as the emitter sets it).
SPAN_KINDS: Final[Mapping[str, str]] = {
    conv.SpanTypeValues.RUN.value: oi.KIND_AGENT,
    conv.SpanTypeValues.PROMPT.value: oi.KIND_LLM,
    conv.SpanTypeValues.RETRIEVAL.value: oi.KIND_RETRIEVER,
    conv.SpanTypeValues.TOOL_CALL.value: oi.KIND_TOOL,
    conv.SpanTypeValues.POLICY_DECISION.value: oi.KIND_GUARDRAIL,
    conv.SpanTypeValues.APPROVAL.value: oi.KIND_CHAIN,
    conv.SpanTypeValues.DOWNSTREAM_WRITE.value: oi.KIND_CHAIN,
}

# Audit columns gathered into Phoenix's `metadata` JSON (shown in its span details and filterable there),
# under these names. They are also span attributes under their own keys.
METADATA_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("run_id", "run_id"),
    ("tenant", "tenant"),
    ("entry_type", "span_type"),
    ("verified_agent_id", "verified_agent_id"),
    ("provenance", "provenance"),
    ("context_hash", "context_hash"),
    ("arguments_hash", "arguments_hash"),
    ("tool_access", "tool_access"),
    ("target", "target"),
    ("approval_decision", "approval_decision"),
    ("approver", "approver"),
    ("policy_id", "policy_id"),
    ("policy_decision", "policy_decision"),
    ("write_system", "write_system"),
    ("write_ref", "write_ref"),
    ("run_outcome", "run_outcome"),
    ("conversation_id", "conversation_id"),
)

_SPAN_KIND_CODES: Final[Mapping[str, int]] = {
    "INTERNAL": Span.SPAN_KIND_INTERNAL,
    "SERVER": Span.SPAN_KIND_SERVER,
    "CLIENT": Span.SPAN_KIND_CLIENT,
    "PRODUCER": Span.SPAN_KIND_PRODUCER,
    "CONSUMER": Span.SPAN_KIND_CONSUMER,
}
_STATUS_CODES: Final[Mapping[str, int]] = {"OK": Status.STATUS_CODE_OK, "ERROR": Status.STATUS_CODE_ERROR}
# Flattened OpenInference lists rebuilt from our JSON content columns: (column, key prefix, item name).
_FLATTENED_COLUMNS: Final = (
    ("input_messages", oi.INPUT_MESSAGES_PREFIX, oi.MESSAGE_ITEM),
    ("output_messages", oi.OUTPUT_MESSAGES_PREFIX, oi.MESSAGE_ITEM),
    ("retrieval_documents", oi.RETRIEVAL_DOCUMENTS_PREFIX, oi.DOCUMENT_ITEM),
)


def to_otlp_request(batch: SpanBatch, project: str) -> ExportTraceServiceRequest:
    """One ResourceSpans per service and one ScopeSpans per instrumentation scope, as the sender grouped them."""
    request = ExportTraceServiceRequest()
    resources: dict[str, ResourceSpans] = {}
    scopes: dict[tuple[str, str, str], ScopeSpans] = {}
    for row in _rows(batch):
        service = str(row["service_name"])
        resource_spans = resources.get(service)
        if resource_spans is None:
            resource_spans = request.resource_spans.add()
            resource_spans.resource.CopyFrom(_resource(service, project))
            resources[service] = resource_spans
        scope_key = (service, str(row["scope_name"]), str(row["scope_version"]))
        scope_spans = scopes.get(scope_key)
        if scope_spans is None:
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.CopyFrom(InstrumentationScope(name=scope_key[1], version=scope_key[2]))
            scopes[scope_key] = scope_spans
        scope_spans.spans.append(_span(row))
    return request


def span_attributes(row: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The attributes Phoenix receives for one stored span (a row of the batch)."""
    attributes: dict[str, AttributeValue] = dict(row["attributes"])
    # Promoted keys left the attributes Map when decoded into columns: put them back under their keys.
    for key, (column, kind) in conv.ATTRIBUTE_COLUMNS.items():
        value = row[column]
        if value not in ("", 0, None):
            attributes[key] = int(value) if kind == "int" else str(value)
    entry_type = str(row["entry_type"])
    attributes.setdefault(conv.OPENINFERENCE_SPAN_KIND, SPAN_KINDS.get(entry_type, oi.KIND_CHAIN))
    if row["run_id"]:
        attributes.setdefault(conv.SESSION_ID, str(row["run_id"]))
    if row["model"]:
        attributes.setdefault(conv.LLM_MODEL_NAME, str(row["model"]))
    provider = attributes.get("gen_ai.provider.name", attributes.get("gen_ai.system"))
    if provider:
        attributes.setdefault("llm.provider", str(provider))
    input_tokens, output_tokens = int(row["input_tokens"]), int(row["output_tokens"])
    if input_tokens or output_tokens:
        # Assigned, not defaulted: the Map holds a producer's counts as text, and Phoenix sums numbers.
        attributes[conv.LLM_TOKEN_COUNT_PROMPT] = input_tokens
        attributes[conv.LLM_TOKEN_COUNT_COMPLETION] = output_tokens
        total = attributes.get(conv.LLM_TOKEN_COUNT_TOTAL)
        attributes[conv.LLM_TOKEN_COUNT_TOTAL] = (
            int(total) if isinstance(total, str) and total.isdigit() else (input_tokens + output_tokens)
        )
    if row["tool_name"]:
        attributes.setdefault(conv.TOOL_NAME, str(row["tool_name"]))
    if row["tool_arguments"]:
        attributes.setdefault(TOOL_PARAMETERS, str(row["tool_arguments"]))
        # Phoenix shows a tool span's input and output panes: the call's arguments and result.
        attributes.setdefault(conv.INPUT_VALUE, str(row["tool_arguments"]))
    if row["tool_result"]:
        attributes.setdefault(conv.OUTPUT_VALUE, str(row["tool_result"]))
    for value_key, mime_key in ((conv.INPUT_VALUE, conv.INPUT_MIME_TYPE), (conv.OUTPUT_VALUE, conv.OUTPUT_MIME_TYPE)):
        if value_key in attributes:
            attributes.setdefault(mime_key, _mime_type(str(attributes[value_key])))
    for column, prefix, item in _FLATTENED_COLUMNS:
        # A producer's own flattened keys win: they are what it meant, and mixing numberings would
        # splice two lists together.
        if row[column] and not any(key.startswith(prefix + ".") for key in attributes):
            attributes.update(_flattened(str(row[column]), prefix, item))
    attributes[METADATA_ATTRIBUTE] = _metadata(row, attributes.get(METADATA_ATTRIBUTE))
    return attributes


def _rows(batch: SpanBatch) -> Iterator[dict[str, Any]]:
    # Times as integer nanoseconds: Python datetimes would drop the last three digits.
    columns: dict[str, list[Any]] = {}
    for field in batch.schema:
        column = batch.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.int64())
        elif pa.types.is_list(field.type) and pa.types.is_timestamp(field.type.value_type):
            column = column.cast(pa.list_(pa.int64()))
        columns[field.name] = column.to_pylist()
    for index in range(batch.num_rows):
        yield {name: values[index] for name, values in columns.items()}


def _resource(service: str, project: str) -> Resource:
    return Resource(attributes=[_key_value("service.name", service), _key_value(PROJECT_ATTRIBUTE, project)])


def _span(row: Mapping[str, Any]) -> Span:
    span = Span(
        trace_id=bytes.fromhex(row["trace_id"]),
        span_id=bytes.fromhex(row["span_id"]),
        parent_span_id=bytes.fromhex(row["parent_span_id"]) if row["parent_span_id"] else b"",
        name=row["name"],
        kind=_SPAN_KIND_CODES.get(row["kind"], Span.SPAN_KIND_INTERNAL),  # type: ignore[arg-type]
        start_time_unix_nano=int(row["start_time"]),
        end_time_unix_nano=int(row["end_time"]),
        attributes=[_key_value(key, value) for key, value in span_attributes(row).items()],
        status=Status(
            code=_STATUS_CODES.get(row["status_code"], Status.STATUS_CODE_UNSET),  # type: ignore[arg-type]
            message=row["status_message"],
        ),
    )
    for name, time, attributes in zip(row["event_names"], row["event_times"], row["event_attributes"], strict=True):
        span.events.add(
            name=name,
            time_unix_nano=int(time),
            attributes=[_key_value(key, value) for key, value in attributes],
        )
    for trace_id, span_id, attributes in zip(
        row["link_trace_ids"], row["link_span_ids"], row["link_attributes"], strict=True
    ):
        span.links.add(
            trace_id=bytes.fromhex(trace_id),
            span_id=bytes.fromhex(span_id),
            attributes=[_key_value(key, value) for key, value in attributes],
        )
    return span


def _key_value(key: str, value: AttributeValue) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _mime_type(value: str) -> str:
    text = value.lstrip()
    if text.startswith(("{", "[")):
        try:
            json.loads(text)
        except ValueError:
            return oi.MIME_TEXT
        return oi.MIME_JSON
    return oi.MIME_TEXT


def _flattened(text: str, prefix: str, item: str) -> dict[str, AttributeValue]:
    """A JSON array of messages or documents as OpenInference's `prefix.N.item.field` keys. Accepts OTel
    GenAI messages (`role` + typed `parts`, tool calls and tool results included), OpenAI-style messages
    (`tool_calls`, `tool_call_id`) and the normaliser's objects (one field per flattened key)."""
    try:
        entries = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(entries, list):
        return {}
    attributes: dict[str, AttributeValue] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        fields = _message_fields(entry) if item == oi.MESSAGE_ITEM else dict(entry)
        for field, value in fields.items():
            attributes[oi.flattened_key(prefix, index, item, field)] = _scalar(value)
    return attributes


def _message_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One message as OpenInference's message fields: role, content, tool_calls.M.tool_call.* (id,
    function.name, function.arguments as text) and tool_call_id, whatever family's shape it came in."""
    fields: dict[str, Any] = dict(entry)
    # The deprecated gen_ai.choice event wraps its message: {"index", "finish_reason", "message": {...}}.
    message = fields.pop("message", None)
    if isinstance(message, dict):
        fields = {**message, **fields}
    calls: list[Mapping[str, Any]] = [call for call in fields.pop("tool_calls", None) or [] if isinstance(call, dict)]
    parts = fields.pop("parts", None)
    if isinstance(parts, list):
        texts: list[str] = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "tool_call":
                calls.append(part)
            elif kind == "tool_call_response":
                fields.setdefault("tool_call_id", part.get("id", ""))
                texts.append(_text(part.get("response", part.get("result", ""))))
            elif "content" in part:
                texts.append(_text(part["content"]))
        if texts:
            fields.setdefault("content", "".join(texts))
    for number, call in enumerate(calls):
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        key = f"tool_calls.{number}.tool_call"
        if call.get("id"):
            fields[f"{key}.id"] = str(call["id"])
        name = call.get("name", function.get("name"))
        if name:
            fields[f"{key}.function.name"] = str(name)
        arguments = call.get("arguments", function.get("arguments"))
        if arguments is not None:
            fields[f"{key}.function.arguments"] = _text(arguments)
    if "content" in fields and not isinstance(fields["content"], str):
        fields["content"] = _text(fields["content"])
    return fields


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _scalar(value: Any) -> AttributeValue:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _metadata(row: Mapping[str, Any], existing: AttributeValue | None) -> str:
    metadata: dict[str, Any] = {}
    if isinstance(existing, str):
        try:
            parsed = json.loads(existing)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            metadata.update(parsed)
    for column, name in METADATA_COLUMNS:
        if row[column]:
            metadata[name] = row[column]
    if row["identity_mismatch"]:
        metadata["identity_mismatch"] = True
    if row["truncated"]:
        metadata["truncated"] = list(row["truncated"])
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
