"""The ClickHouse-native ingest path on our schema, stage by stage, against the Python path, in one process.

    .venv/bin/python benchmarks/ingest_native.py --spans 100000 --repeats 3
    .venv/bin/python benchmarks/ingest_native.py --smoke        # seconds, as the tests

From the same OTLP requests as benchmarks/ingest*.py (agent_spans.py), CPU seconds per 100k spans and stored
spans per CPU second (this process, so chDB's threads and merges count) for:
  python              the collector's path as benchmarks/ingest_stages.py runs it (parse, decode, normalize,
                      redaction, spool, export with digests and the audit chain);
  native decode only  the SELECT below alone (FORMAT Null): what chDB's decoding and flattening cost;
  native              the raw requests spooled as length-delimited protobuf (fsync per request), then one
                      INSERT INTO spans SELECT ... FROM file(segment, Protobuf) ARRAY JOIN per batch: chDB
                      decodes, flattens and stores every column of our spans table, our views fill as usual;
  native+digests      the same into a Memory staging table with each span's v3 digest (digest_sql), then
                      into spans, and the audit chain linked from the SQL digests (screening included);
  native+prefilter    and a redaction prefilter in SQL, `hyperscan` (multiMatchAny) or `re2` (one match of the
                      alternation), of our detectors' prefilter patterns and the gitleaks keywords and short
                      rules, flagging the rows Python must see (checked on seeded personal data too);
  decoder parity      the native SELECT against the Python decoder on crafted spans (every AnyValue kind,
                      events, links, statuses, resource attributes, refused spans): the columns that differ;
  floor ...           a pre-built Arrow batch (the Python path's output) through SpanWriter.insert: the cost of
                      our table layout alone, with ZSTD(3) or LZ4 content columns, with or without the views.
Every storing mode checks that every span is stored (and, with digests, chained); the native rows are compared with the
Python path's column by column, the SQL digests with the Python digests of the same stored rows.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_spans import request_bodies
from ingest_stages import Stages, run_once, workload

from agentledger.collector.components import PROCESSORS, ComponentContext, component_type
from agentledger.collector.config import LimitsConfig
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.processors.redaction import DEFAULT_KEEP_KEYS, DEFAULT_MASK_KEYS, SUMMARY_KEY
from agentledger.collector.receivers.otlp_decode import RESERVED_KEYS, Identity, decode_request
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.audit_chain import DIGEST_FIELDS_V3_KINDS, ChainWriter, digest_sql, span_digest
from agentledger.ingest.clickhouse import chdb_dsn, connect
from agentledger.ingest.migrations import migrate
from agentledger.ingest.retention import KEEP_FOREVER, RetentionPolicy
from agentledger.ingest.span_writer import SpanWriter
from agentledger.schema import conventions as conv
from agentledger.schema.run_ids import MAX_RUN_ID_BYTES
from agentledger.schema.span_columns import PROMOTED_COLUMNS, SPAN_SCHEMA
from agentledger.schema.span_types import _BY_OPENINFERENCE_KIND, _BY_OPERATION, _KNOWN

# --- the OTLP schema, written from the installed opentelemetry-proto descriptors ---------------------------

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes", FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32", FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float", FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT64: "sint64", FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
}  # fmt: skip


def _type_name(field: FieldDescriptor) -> str:
    named: Any = field.message_type or field.enum_type
    if named is None:
        return _SCALARS[field.type]
    parts = []
    while named is not None:
        parts.append(named.name)
        named = named.containing_type
    return ".".join(reversed(parts))


def _message_text(message: Descriptor, indent: str = "") -> list[str]:
    lines = [f"{indent}message {message.name} {{"]
    for enum in message.enum_types:
        values = " ".join(f"{value.name} = {value.number};" for value in enum.values)
        lines.append(f"{indent}  enum {enum.name} {{ {values} }}")
    for nested in message.nested_types:
        lines += _message_text(nested, indent + "  ")
    oneofs: dict[str, list[FieldDescriptor]] = {}
    for field in message.fields:
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):  # a real oneof, not proto3 `optional`
            oneofs.setdefault(oneof.name, []).append(field)
            continue
        lines.append(
            f"{indent}  {'repeated ' if field.is_repeated else ''}{_type_name(field)} {field.name} = {field.number};"
        )
    for name, fields in oneofs.items():
        members = " ".join(f"{_type_name(field)} {field.name} = {field.number};" for field in fields)
        lines.append(f"{indent}  oneof {name} {{ {members} }}")
    return [*lines, f"{indent}}}"]


def otlp_schema() -> str:
    """ExportTraceServiceRequest and every message it reaches, as one package-less proto3 file (OTLP's message
    names are unique across its packages), from the descriptors the Python decoder itself uses."""
    found: dict[str, Descriptor] = {}

    def collect(message: Descriptor) -> None:
        while message.containing_type is not None:
            message = message.containing_type
        if message.full_name in found:
            return
        found[message.full_name] = message
        for field in message.fields:
            if field.message_type is not None:
                collect(field.message_type)
        for nested in message.nested_types:
            for field in nested.fields:
                if field.message_type is not None:
                    collect(field.message_type)

    collect(ExportTraceServiceRequest.DESCRIPTOR)
    return "\n".join(['syntax = "proto3";', *(line for message in found.values() for line in _message_text(message))])


# What ClickHouse reads of each request: only what the spans table needs. With
# input_format_protobuf_oneof_presence, AnyValue's `value` column says which member of its oneof was set, so an
# int 0 or a false is told from an unset value.
_ONEOF = ("Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4,"
          " 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7, 'string_value_strindex' = 8)")  # fmt: skip
_ANY_VALUE = (f"Tuple(value {_ONEOF}, string_value String, bool_value Bool, int_value Int64, double_value Float64,"
              " bytes_value String)")  # fmt: skip
_KEY_VALUES = f"Array(Tuple(key String, value {_ANY_VALUE}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_KEY_VALUES}), scope_spans Array(Tuple("
    f"scope Tuple(name String, version String, attributes {_KEY_VALUES}), spans Array(Tuple(trace_id String,"
    f" span_id String, parent_span_id String, name String, kind Int8, start_time_unix_nano UInt64,"
    f" end_time_unix_nano UInt64, attributes {_KEY_VALUES}, events Array(Tuple(time_unix_nano UInt64, name String,"
    f" attributes {_KEY_VALUES})), links Array(Tuple(trace_id String, span_id String, attributes {_KEY_VALUES})),"
    f" status Tuple(message String, code Int8)))))))"
)


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _array(values: Sequence[str]) -> str:
    return "[" + ", ".join(_quoted(value) for value in values) + "]"


# --- the SELECT that turns requests into spans rows ---------------------------------------------------------


def _text(value: str) -> str:
    """An AnyValue as otlp_decode.any_value_text stores it (JSON but for strings: bytes as a quoted base64 string),
    for strings, bools, ints, bytes and the doubles whose
    Python repr is plain decimal; arrays, kvlists and doubles Python writes with an exponent (or inf/NaN) give ''
    here and flag the row for Python (_needs_python)."""
    number = f"{value}.double_value"
    double = (f"if({number} = trunc({number}) AND abs({number}) < 1e16, concat(toString({number}), '.0'),"
              f" toString({number}))")  # fmt: skip
    return (f"multiIf({value}.value = 'string_value', {value}.string_value,"
            f" {value}.value = 'bool_value', if({value}.bool_value, 'true', 'false'),"
            f" {value}.value = 'int_value', toString({value}.int_value),"
            f" {value}.value = 'double_value', {double},"
            f" {value}.value = 'bytes_value', concat('\"', base64Encode({value}.bytes_value), '\"'), '')")  # fmt: skip


def _python_only(value: str) -> str:
    """Whether an AnyValue is one _text does not render as the Python decoder does."""
    number = f"{value}.double_value"
    return (f"({value}.value IN ('array_value', 'kvlist_value', 'string_value_strindex') OR ({value}.value ="
            f" 'double_value' AND (NOT isFinite({number}) OR abs({number}) >= 1e16"
            f" OR ({number} != 0 AND abs({number}) < 1e-4))))")  # fmt: skip


def _int(value: str) -> str:
    """otlp_decode._int_of (a string of digits with spaces or underscores, which Python's int() takes, gives 0)."""
    number = f"{value}.double_value"
    return (f"multiIf({value}.value = 'int_value', {value}.int_value, {value}.value = 'double_value',"
            f" if({number} >= -9.223372036854775808e18 AND {number} < 9.223372036854775808e18, toInt64({number}), 0),"
            f" {value}.value = 'string_value', toInt64OrZero({value}.string_value), 0)")  # fmt: skip


def _transform(expression: str, mapping: dict[Any, str], default: str) -> str:
    keys = "[" + ", ".join(_quoted(k) if isinstance(k, str) else str(k) for k in mapping) + "]"
    return f"transform({expression}, {keys}, {_array(list(mapping.values()))}, {_quoted(default)})"


_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_MAX_TIME = 2**63 - 1


def spans_select(tenant: str, agent_id: str, limits: LimitsConfig) -> str:
    """SELECT <every SPAN_SCHEMA column, retain_until, legal_hold, needs_python> over the requests of `{segment}`
    (the caller formats it in); the FROM file(...) ARRAY JOIN of resource, scope and span."""
    promoted_keys = [key for key, _, _ in PROMOTED_COLUMNS]
    reserved = _array(sorted(RESERVED_KEYS))
    columns: dict[str, str] = {}
    columns["tenant"] = _quoted(tenant)
    columns["run_id"] = "run_id_"
    columns["trace_id"] = "lower(hex(sp.trace_id))"
    columns["span_id"] = "lower(hex(sp.span_id))"
    columns["parent_span_id"] = "lower(hex(sp.parent_span_id))"
    columns["start_time"] = "fromUnixTimestamp64Nano(toInt64(sp.start_time_unix_nano))"
    columns["end_time"] = "fromUnixTimestamp64Nano(toInt64(end_))"
    columns["duration_ns"] = "end_ - sp.start_time_unix_nano"
    columns["name"] = "sp.name"
    columns["kind"] = _transform("sp.kind", _KINDS, "UNSPECIFIED")
    columns["status_code"] = _transform("sp.status.code", _STATUS, "UNSET")
    columns["status_message"] = "sp.status.message"
    columns["service_name"] = "if(has(res_keys_, 'service.name'), res_texts_[indexOf(res_keys_, 'service.name')], '')"
    columns["scope_name"] = "ss.scope.name"
    columns["scope_version"] = "ss.scope.version"
    columns["verified_agent_id"] = _quoted(agent_id)
    columns["identity_mismatch"] = f"{_quoted(agent_id)} != '' AND agent_id_ != '' AND agent_id_ != {_quoted(agent_id)}"
    columns["truncated"] = "if(end_ != sp.end_time_unix_nano, ['end_time'], [])"
    columns["conversation_id"] = "''"
    for key, column, kind in PROMOTED_COLUMNS:
        if column == "entry_type":
            by_kind = {k: v.value for k, v in _BY_OPENINFERENCE_KIND.items()}
            explicit = f"{column}_"
            columns[column] = (f"multiIf({explicit} IN {_array(sorted(_KNOWN))}, {explicit},"
                               f" operation_ IN {_array(list(_BY_OPERATION))},"
                               f" {_transform('operation_', {k: v.value for k, v in _BY_OPERATION.items()}, '')},"
                               f" upperUTF8(oi_kind_) IN {_array(list(_BY_OPENINFERENCE_KIND))},"
                               f" {_transform('upperUTF8(oi_kind_)', by_kind, '')},"
                               " 'span')")  # fmt: skip
        elif column in ("agent_id", "operation"):
            columns[column] = f"{column}_"
        elif kind == "int":
            own = f"arrayLastIndex(kv -> kv.key = {_quoted(key)}, sp.attributes)"
            of_resource = f"arrayLastIndex(kv -> kv.key = {_quoted(key)}, rs.resource.attributes)"
            columns[column] = (f"if({own} > 0, {_int(f'sp.attributes[{own}].value')}, if({of_resource} > 0,"
                               f" {_int(f'rs.resource.attributes[{of_resource}].value')}, 0))")  # fmt: skip
        else:
            columns[column] = f"span_map_[{_quoted(key)}]"
    columns["attributes"] = ("mapFromArrays(arrayFilter((k, kept) -> kept, span_keys_, span_kept_),"
                             " arrayFilter((t, kept) -> kept, span_texts_, span_kept_))")  # fmt: skip
    columns["resource_attributes"] = "mapFromArrays(res_keys_, res_texts_)"

    def item_map(items: str) -> str:
        kept = f"arrayFilter(kv -> NOT has({reserved}, kv.key), {items}.attributes)"
        return f"mapFromArrays(arrayMap(kv -> kv.key, {kept}), arrayMap(kv -> {_text('kv.value')}, {kept}))"

    columns["event_times"] = "arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), sp.events)"
    columns["event_names"] = "arrayMap(e -> e.name, sp.events)"
    columns["event_attributes"] = f"arrayMap(e -> {item_map('e')}, sp.events)"
    columns["link_trace_ids"] = "arrayMap(l -> lower(hex(l.trace_id)), sp.links)"
    columns["link_span_ids"] = "arrayMap(l -> lower(hex(l.span_id)), sp.links)"
    columns["link_attributes"] = f"arrayMap(l -> {item_map('l')}, sp.links)"
    assert list(columns) == [name for name in SPAN_SCHEMA.names if name in columns] and set(columns) == set(
        SPAN_SCHEMA.names
    )
    columns = {name: columns[name] for name in SPAN_SCHEMA.names}
    columns["retain_until"] = f"toDateTime({KEEP_FOREVER})"  # the default policy: keep (RetentionPolicy())
    columns["legal_hold"] = "toUInt8(0)"  # no agent holds in the benchmark's database

    every_value = ("arrayConcat(arrayMap(kv -> kv.value, sp.attributes),"
                   " arrayMap(kv -> kv.value, rs.resource.attributes),"
                   " arrayFlatten(arrayMap(e -> arrayMap(kv -> kv.value, e.attributes), sp.events)),"
                   " arrayFlatten(arrayMap(l -> arrayMap(kv -> kv.value, l.attributes), sp.links)))")  # fmt: skip
    content = [key for key, _, kind in PROMOTED_COLUMNS if kind == "content"]
    # What the decoder would cut or count (limits), or render otherwise: such rows are the Python decoder's.
    columns["needs_python"] = (
        f"arrayExists(v -> {_python_only('v')}, {every_value})"
        f" OR arrayExists(t -> length(t) > {limits.max_attribute_value_bytes},"
        f" arrayFilter((t, k) -> NOT has({_array(content)}, k), span_texts_, span_keys_))"
        f" OR arrayExists(t -> length(t) > {limits.max_content_bytes}, span_texts_)"
        f" OR arrayExists(t -> length(t) > {limits.max_attribute_value_bytes}, res_texts_)"
        f" OR length(sp.name) > {limits.max_attribute_value_bytes}"
        f" OR length(sp.attributes) > {limits.max_attributes_per_span}"
        f" OR length(sp.events) > {limits.max_events_per_span} OR length(sp.links) > {limits.max_links_per_span}"
        f" OR hasAny(arrayConcat(span_keys_, arrayMap(kv -> kv.key, rs.resource.attributes),"
        f" arrayMap(kv -> kv.key, ss.scope.attributes)), {reserved})"
    )
    body = ",\n    ".join(f"{expression} AS {name}" for name, expression in columns.items())
    # span_map_ answers the promoted string columns and the run id: span values first, each key's last one before
    # its earlier ones, then the resource's, so that the map's first match (its lookup) is the decoder's winner.
    moved_set = (
        "(" + ", ".join(_quoted(key) for key in [*promoted_keys, conv.AGENT_RUN_ID, *sorted(RESERVED_KEYS)]) + ")"
    )
    oi_kind = _quoted(conv.OPENINFERENCE_SPAN_KIND)
    return f"""WITH
    arrayMap(kv -> kv.key, sp.attributes) AS span_keys_,
    arrayMap(kv -> {_text("kv.value")}, sp.attributes) AS span_texts_,
    arrayFilter(kv -> NOT has({reserved}, kv.key), rs.resource.attributes) AS res_kept_,
    arrayMap(kv -> kv.key, res_kept_) AS res_keys_,
    arrayMap(kv -> {_text("kv.value")}, res_kept_) AS res_texts_,
    mapFromArrays(arrayConcat(arrayReverse(span_keys_), arrayReverse(res_keys_)),
                  arrayConcat(arrayReverse(span_texts_), arrayReverse(res_texts_))) AS span_map_,
    arrayMap(k -> k NOT IN {moved_set}, span_keys_) AS span_kept_,
    span_map_[{_quoted(conv.AGENT_RUN_ID)}] AS run_id_,
    span_map_['{conv.AGENTLEDGER_SPAN_TYPE}'] AS entry_type_,
    span_map_['{conv.GEN_AI_OPERATION_NAME}'] AS operation_,
    span_map_['{conv.GEN_AI_AGENT_ID}'] AS agent_id_,
    if(has(span_keys_, {oi_kind}), span_texts_[indexOf(span_keys_, {oi_kind})], '') AS oi_kind_,
    greatest(sp.end_time_unix_nano, sp.start_time_unix_nano) AS end_
SELECT
    {body}
FROM file('{{segment}}', 'Protobuf', {_quoted(STRUCTURE)})
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS sp
WHERE length(sp.trace_id) = 16 AND length(sp.span_id) = 8 AND sp.trace_id != repeat('\\0', 16)
  AND sp.start_time_unix_nano != 0 AND sp.start_time_unix_nano <= {_MAX_TIME} AND sp.end_time_unix_nano <= {_MAX_TIME}
  AND NOT arrayExists(e -> e.time_unix_nano > {_MAX_TIME}, sp.events)
  AND length(run_id_) <= {MAX_RUN_ID_BYTES}"""


def _glob_regex(globs: Sequence[str]) -> str:
    """The redaction processor's key globs (fnmatch, on the lowercased key) as one RE2 pattern."""
    return "|".join("^" + ".*".join(re.escape(part) for part in glob.lower().split("*")) + "$" for glob in globs)


def prefilter_sql(engine: str) -> tuple[str, int]:
    """needs_redaction: whether a row holds a value the redaction processor's columnar prefilter would pass
    to Python (its detectors' prefilter patterns, the gitleaks keywords case-insensitively and its short rules),
    or a key it masks; and how many patterns that is. `engine`: "hyperscan" (multiMatchAny, one pattern each)
    or "re2" (match, one alternation of them all, as the Python prefilter does)."""
    # The redaction processor reads no storage: it is built without a client.
    context = ComponentContext("redaction", None, CollectorTelemetry())  # type: ignore[arg-type]
    processor = PROCESSORS["redaction"].create(CollectorConfig().processors["redaction"], context)
    scanner = processor.scanner  # type: ignore[attr-defined]
    patterns = [pattern for detector in scanner.detectors for pattern in detector.prefilter_patterns]
    rules = scanner.rules
    if rules is not None:
        # multiSearchAnyCaseInsensitive over the 200-odd keywords costs 15x the regexes: (?i) literals instead.
        patterns += [f"(?i){re.escape(keyword)}" for keyword in rules.keyword_literals.replace("\\", "").split("|")]
        patterns += [rules.short_rule_pattern] if rules.short_rule_pattern else []
    keep, mask = _glob_regex((*DEFAULT_KEEP_KEYS, SUMMARY_KEY)), _glob_regex(DEFAULT_MASK_KEYS)
    scanned_columns = ["name", "status_message", "service_name", "scope_name"]
    scanned_columns += [column for key, column, kind in PROMOTED_COLUMNS
                        if kind != "int" and not re.match(keep, key.lower())]  # fmt: skip
    values = (f"arrayConcat([{', '.join(scanned_columns)}], event_names,"
              f" mapValues(mapFilter((k, v) -> NOT match(lower(k), {_quoted(keep)}), attributes)),"
              f" mapValues(mapFilter((k, v) -> NOT match(lower(k), {_quoted(keep)}), resource_attributes)),"
              f" arrayFlatten(arrayMap(m -> mapValues(m), event_attributes)),"
              f" arrayFlatten(arrayMap(m -> mapValues(m), link_attributes)))")  # fmt: skip
    if engine == "hyperscan":
        test = f"multiMatchAny(v, {_array(patterns)})"
    else:
        test = f"match(v, {_quoted('|'.join(f'(?:{pattern})' for pattern in patterns))})"
    condition = (f"arrayExists(v -> {test}, {values})"
                 f" OR arrayExists(k -> match(lower(k), {_quoted(mask)}), mapKeys(attributes))")  # fmt: skip
    return condition, len(patterns)


# --- the modes ------------------------------------------------------------------------------------------------


def protobuf_settings(folder: Path) -> str:
    """The SETTINGS of a query reading OTLP requests: the schema written into `folder` (a schema given as a string
    would be cached by chDB in a folder under the working directory)."""
    schema = folder / "otlp_trace.proto"
    schema.write_text(otlp_schema(), encoding="utf-8")
    return (f"format_schema = {_quoted(f'{schema}:ExportTraceServiceRequest')},"
            " input_format_protobuf_oneof_presence = 1")  # fmt: skip


_INSERT_SETTINGS = "deduplicate_blocks_in_dependent_materialized_views = 1"
_STORED_COLUMNS = [*SPAN_SCHEMA.names, "retain_until", "legal_hold"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class RawSpool:
    """The spool of the native path: each request's bytes as received, length-delimited (what ClickHouse's
    Protobuf format reads), fsync'd before the request would be acknowledged; one segment per export batch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.number = 0
        self._file: Any = None
        self.path = folder

    def append(self, body: bytes) -> None:
        if self._file is None:
            self.number += 1
            self.path = self.folder / f"segment-{self.number:06d}.pb"
            self._file = self.path.open("wb")
        self._file.write(_varint(len(body)) + body)
        self._file.flush()
        os.fsync(self._file.fileno())

    def seal(self) -> Path:
        self._file.close()
        self._file = None
        return self.path


def _fresh(dsn: str, database: str) -> Any:
    client = connect(dsn, database)
    client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    client = connect(dsn, database)
    client.set_client_setting("use_query_condition_cache", 0)
    migrate(client)
    return client


def run_native(
    bodies: list[tuple[int, bytes]], export_spans: int, database: str, dsn: str, folder: Path, mode: str
) -> tuple[Stages, int, dict[str, int], set[str]]:
    """One run of a native mode ('native', 'native+digests', 'native+prefilter'); returns its stages, the spans
    stored (and chained, with digests), what the SQL counted (rows flagged for Python) and the span keys the
    redaction prefilter flagged."""
    client = _fresh(dsn, database)
    limits = LimitsConfig()
    select = spans_select("default", "", limits)
    settings = protobuf_settings(folder)
    direct_settings = settings
    columns = ", ".join(_STORED_COLUMNS)
    stages = Stages()
    counted = {"needs_python (decoder)": 0, "needs_redaction (prefilter)": 0}
    flagged: set[str] = set()
    chain = ChainWriter(client, "collector") if mode.startswith("native+") else None
    if chain is not None:
        extra = f"{digest_sql()} AS span_digest"
        if mode.startswith("native+prefilter"):
            condition, _ = prefilter_sql("hyperscan" if mode.endswith("hyperscan") else "re2")
            extra += f", toUInt8({condition}) AS needs_redaction"
            # Some detectors' patterns (bounded repeats, the private-key block) are ones ClickHouse refuses
            # by default as "too slow in vectorscan"; measured here as they are.
            settings += ", reject_expensive_hyperscan_regexps = 0"
        else:
            extra += ", toUInt8(0) AS needs_redaction"
        client.command("CREATE TABLE native_batch AS spans ENGINE = Memory")
        client.command("ALTER TABLE native_batch ADD COLUMN span_digest String, ADD COLUMN needs_python UInt8,"
                       " ADD COLUMN needs_redaction UInt8")  # fmt: skip
    spool = RawSpool(folder)
    spooled = 0

    def flush(batch_number: int) -> None:
        segment = str(spool.seal())
        query = select.replace("{segment}", segment)
        if mode == "native decode only":
            stages.timed("decode+flatten (FORMAT Null)", client.command,
                         f"SELECT {columns} FROM ({query}) SETTINGS {direct_settings} FORMAT Null")  # fmt: skip
            return
        if chain is None:
            stages.timed("insert (decode+flatten+views)", client.command,
                         f"INSERT INTO spans ({columns}) SETTINGS {direct_settings}, {_INSERT_SETTINGS},"
                         f" insert_deduplication_token = 'bench:{batch_number}'"
                         f" SELECT {columns} FROM ({query})")  # fmt: skip
            return
        stages.timed("decode+digests into staging", client.command,
                     f"INSERT INTO native_batch ({columns}, needs_python, span_digest, needs_redaction)"
                     f" SETTINGS {settings} SELECT *, {extra} FROM ({query})")  # fmt: skip
        stages.timed("insert from staging (+views)", client.command,
                     f"INSERT INTO spans ({columns}) SETTINGS {_INSERT_SETTINGS},"
                     f" insert_deduplication_token = 'bench:{batch_number}'"
                     f" SELECT {columns} FROM native_batch")  # fmt: skip
        keys = stages.timed("read keys+digests", client.query_arrow,
                            "SELECT tenant, run_id, trace_id, span_id, span_digest, needs_python, needs_redaction"
                            " FROM native_batch")  # fmt: skip

        def link() -> None:
            digests = keys["span_digest"].to_pylist()
            screened = chain.screen(keys, digests)
            assert all(screened.keep), "the benchmark sends every span once"
            until = [KEEP_FOREVER] * keys.num_rows
            chain.append(chain.links_for(keys, time.time_ns(), until, digests))

        stages.timed("audit chain (screen+links)", link)
        counted["needs_python (decoder)"] += int(pa.compute.sum(keys["needs_python"]).as_py() or 0)
        counted["needs_redaction (prefilter)"] += int(pa.compute.sum(keys["needs_redaction"]).as_py() or 0)
        if counted["needs_redaction (prefilter)"]:
            marked = keys.filter(pa.compute.equal(keys["needs_redaction"], 1))
            flagged.update(
                f"{t}:{s}" for t, s in zip(marked["trace_id"].to_pylist(), marked["span_id"].to_pylist(), strict=True)
            )
        client.command("TRUNCATE TABLE native_batch")

    for number, (_, body) in enumerate(bodies):
        stages.timed("spool (raw bytes, fsync)", spool.append, body)
        spooled += _
        if spooled >= export_spans:
            flush(number)
            spooled = 0
    if spooled:
        flush(len(bodies))
    stored = int(client.query("SELECT count() FROM spans").result_rows[0][0])
    if chain is not None:
        chain.checkpoint_pending(force=True)
        chained = int(client.query("SELECT sum(length(span_keys)) FROM audit_chain").result_rows[0][0])
        stored = min(stored, chained)
        client.command("DROP TABLE native_batch")
    client.close()
    return stages, stored, counted, flagged


def python_batches(bodies: list[tuple[int, bytes]], export_spans: int, client: Any) -> list[pa.Table]:
    """The Python path's batches as the exporter receives them (decoded, normalized, redacted), export_spans
    spans each: the input of the insert floors."""
    config = CollectorConfig()
    telemetry = CollectorTelemetry()
    processors = [PROCESSORS[component_type(component_id)].create(
        config.processors[component_id], ComponentContext(component_id, client, telemetry))
        for component_id in config.pipeline.processors]  # fmt: skip
    batches, pending, count = [], [], 0
    for spans, body in bodies:
        batch = decode_request(ExportTraceServiceRequest.FromString(body), Identity("default"), None, len(body)).batch
        for processor in processors:
            batch = processor.process(batch)
        pending.append(batch)
        count += spans
        if count >= export_spans:
            batches.append(pa.concat_tables(pending).combine_chunks())
            pending, count = [], 0
    if pending:
        batches.append(pa.concat_tables(pending).combine_chunks())
    return batches


_FLOORS = {
    "floor ZSTD content, views": ("zstd", True),
    "floor ZSTD content, no views": ("zstd", False),
    "floor LZ4 content, views": ("lz4", True),
    "floor LZ4 content, no views": ("lz4", False),
}


def run_floor(batches: list[pa.Table], database: str, dsn: str, codec: str, views: bool) -> tuple[Stages, int]:
    client = _fresh(dsn, database)
    if codec == "lz4":
        for _, column, kind in PROMOTED_COLUMNS:
            if kind == "content":
                client.command(f"ALTER TABLE spans MODIFY COLUMN {column} String CODEC(LZ4)")
    if not views:
        rows = client.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine ="
                            " 'MaterializedView' AND has(dependencies_table, 'spans') = 0"
                            " AND position(create_table_query, 'FROM ' || currentDatabase() || '.spans') > 0"
                            ).result_rows  # fmt: skip
        for (name,) in rows:
            client.command(f"DROP VIEW {name}")
    writer = SpanWriter(client)
    retention = RetentionPolicy()
    stages = Stages()
    for number, batch in enumerate(batches):
        policy = {
            "retain_until": retention.retain_until(batch),
            "legal_hold": pa.array([0] * batch.num_rows, pa.uint8()),
        }
        stages.timed("insert_arrow", writer.insert, batch, f"bench:{number}", policy)
    stored = int(client.query("SELECT count() FROM spans").result_rows[0][0])
    if not views:
        remaining = int(client.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                                     " AND engine = 'MaterializedView' AND position(create_table_query,"
                                     " 'FROM ' || currentDatabase() || '.spans') > 0").result_rows[0][0])  # fmt: skip
        assert remaining == 0, f"{remaining} views on spans left"
    client.close()
    return stages, stored


# --- checks ----------------------------------------------------------------------------------------------------


def column_differences(client: Any, python_db: str, native_db: str) -> tuple[int, dict[str, int]]:
    """Spans present in both databases, and per column the rows whose stored values differ (only-one-side spans
    are reported under '(missing)')."""
    joined = (f"FROM {python_db}.spans AS p INNER JOIN {native_db}.spans AS n"
              " ON p.trace_id = n.trace_id AND p.span_id = n.span_id")  # fmt: skip
    counts = ", ".join(f"countIf(toString(p.{name}) != toString(n.{name}))" for name in SPAN_SCHEMA.names)
    row = client.query(f"SELECT count(), {counts} {joined}").result_rows[0]
    both = int(row[0])
    differences = {name: int(count) for name, count in zip(SPAN_SCHEMA.names, row[1:], strict=True) if count}
    totals = [int(client.query(f"SELECT count() FROM {db}.spans").result_rows[0][0]) for db in (python_db, native_db)]
    if max(totals) != both:
        differences["(missing)"] = max(totals) - both
    return both, differences


def _crafted_request() -> ExportTraceServiceRequest:
    """Spans exercising what the benchmark's spans do not: every AnyValue kind, zero and false values, promoted
    attributes on the resource and repeated on the span, events, links, statuses, an end before the start, a
    reserved key, and two spans both decoders must refuse."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    def kv(key: str, **value: Any) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(**value))

    kinds = [kv("s", string_value="text ü"), kv("t", bool_value=True), kv("f", bool_value=False),
             kv("zero", int_value=0), kv("seven", int_value=7), kv("half", double_value=1.5),
             kv("three", double_value=3.0), kv("negative", double_value=-0.25), kv("raw", bytes_value=b"\x00\xffab"),
             kv("unset"), kv("empty", string_value="")]  # fmt: skip
    # The kinds the SQL renders otherwise (and flags for Python), on a span of their own.
    python_only = [kv("huge", double_value=1e20), kv("tiny", double_value=1e-7),
                   kv("list", array_value=ArrayValue(values=[AnyValue(string_value="x"), AnyValue(int_value=2)])),
                   kv("nested", kvlist_value=KeyValueList(values=[kv("a", string_value="b")]))]  # fmt: skip
    trace = bytes(range(1, 17))
    base = 1_764_000_000_000_000_000

    def span(number: int, **fields: Any) -> Span:
        defaults: dict[str, Any] = {"trace_id": trace, "span_id": bytes([number] * 8), "name": f"span {number}",
                                    "start_time_unix_nano": base + number,
                                    "end_time_unix_nano": base + 1000}  # fmt: skip
        return Span(**{**defaults, **fields})

    spans = [
        span(1, attributes=kinds, kind=Span.SPAN_KIND_SERVER),
        span(2, attributes=[kv(conv.AGENT_RUN_ID, string_value="run-a"), kv(conv.AGENT_RUN_ID, string_value="run-b"),
                            kv(conv.GEN_AI_AGENT_NAME, string_value="span-agent"),
                            kv(conv.GEN_AI_USAGE_INPUT_TOKENS, string_value="12"),
                            kv(conv.GEN_AI_USAGE_OUTPUT_TOKENS, double_value=3.7),
                            kv(conv.AGENTLEDGER_TENANT_ID, string_value="forged")]),
        span(3, end_time_unix_nano=base, parent_span_id=bytes([1] * 8),
             status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
             events=[Span.Event(time_unix_nano=base + 5, name="retry", attributes=[kv("attempt", int_value=2)])],
             links=[Span.Link(trace_id=trace, span_id=bytes([2] * 8), attributes=[kv("why", string_value="x")])]),
        span(4, attributes=[kv(conv.OPENINFERENCE_SPAN_KIND, string_value="llm"), kv("n", int_value=-5)]),
        span(5, attributes=python_only),
        span(6, trace_id=bytes(8)),
        span(7, start_time_unix_nano=0),
    ]  # fmt: skip
    resource = [kv("service.name", string_value="svc"), kv(conv.AGENT_RUN_ID, string_value="run-resource"),
                kv(conv.GEN_AI_AGENT_NAME, string_value="resource-agent"), kv("pid", int_value=42)]  # fmt: skip
    scope = ScopeSpans(spans=spans)
    scope.scope.name, scope.scope.version = "crafted", "1.0"
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope])])
    request.resource_spans[0].resource.attributes.extend(resource)
    return request


def decoder_parity(client: Any, dsn: str, folder: Path) -> str:
    """The native SELECT against otlp_decode.decode_request on _crafted_request: the columns that differ, on how
    many spans, and whether the SQL flags each differing span for the Python decoder."""
    request = _crafted_request()
    body = request.SerializeToString()
    python = _fresh(dsn, "parity_python")
    batch = decode_request(request, Identity("default"), None, len(body)).batch
    policy = {
        "retain_until": RetentionPolicy().retain_until(batch),
        "legal_hold": pa.array([0] * batch.num_rows, pa.uint8()),
    }
    SpanWriter(python).insert(batch, "parity", policy)
    python.close()
    spool_folder = folder / "spool-parity"
    spool_folder.mkdir()
    run_native([(len(request.resource_spans[0].scope_spans[0].spans), body)], 1000, "parity_native", dsn,
               spool_folder, "native")  # fmt: skip
    segment = RawSpool(spool_folder)
    segment.append(body)
    query = spans_select("default", "", LimitsConfig()).replace("{segment}", str(segment.seal()))
    settings = protobuf_settings(spool_folder)
    flagged = {str(key) for (key,) in client.query(
        f"SELECT concat(trace_id, ':', span_id) FROM ({query}) WHERE needs_python SETTINGS {settings}"
    ).result_rows}  # fmt: skip
    any_difference = " OR ".join(f"toString(p.{name}) != toString(n.{name})" for name in SPAN_SCHEMA.names)
    differing = {str(key) for (key,) in client.query(
        "SELECT concat(p.trace_id, ':', p.span_id) FROM parity_python.spans AS p INNER JOIN parity_native.spans AS n"
        f" ON p.trace_id = n.trace_id AND p.span_id = n.span_id WHERE {any_difference}").result_rows}  # fmt: skip
    both, differences = column_differences(client, "parity_python", "parity_native")
    listed = ", ".join(f"{name} ({count})" for name, count in differences.items()) or "none"
    unflagged = len(differing - flagged)
    return (f"decoder parity on {len(request.resource_spans[0].scope_spans[0].spans)} crafted spans ({both} stored by"
            f" both): differing: {listed}; {len(flagged)} flagged for the Python decoder,"
            f" {unflagged} differing span(s) not flagged")  # fmt: skip


def python_digests_of_stored(client: Any, database: str) -> dict[str, str]:
    """span key -> the Python span digest (span_digest, row-wise: the verifier's code) of each stored row."""
    selected = []
    for name, kind in DIGEST_FIELDS_V3_KINDS:
        if kind == "time":
            selected.append(f"toUnixTimestamp64Nano({name}) AS {name}")
        elif kind == "times":
            selected.append(f"arrayMap(x -> toUnixTimestamp64Nano(x), {name}) AS {name}")
        elif kind == "map":
            selected.append(f"arrayZip(mapKeys({name}), mapValues({name})) AS {name}")
        elif kind == "maps":
            selected.append(f"arrayMap(m -> arrayZip(mapKeys(m), mapValues(m)), {name}) AS {name}")
        else:
            selected.append(name)
    result = client.query(f"SELECT {', '.join(selected)} FROM {database}.spans")
    names = result.column_names
    return {f"{row['trace_id']}:{row['span_id']}": span_digest(row)
            for row in (dict(zip(names, values, strict=True)) for values in result.result_rows)}  # fmt: skip


def chained_digests(client: Any, database: str) -> dict[str, str]:
    rows = client.query(f"SELECT key, digest FROM {database}.audit_chain ARRAY JOIN span_keys AS key,"
                        " span_digests AS digest WHERE kind = 'spans'").result_rows  # fmt: skip
    return {str(key): str(digest) for key, digest in rows}


_PII = (
    "write to jane.doe@example.com today",
    "card 4111 1111 1111 1111 exp 12/29",
    "IBAN DE89 3704 0044 0532 0130 00",
    "call +1 415 555 2671 after",
    "key AKIAQYLPMN5HHHFPZAM2 rotated",
    "host 203.0.113.54 down",
)


def pii_bodies(spans: int = 60) -> list[tuple[int, bytes]]:
    """The benchmark's first spans with personal data and a secret seeded into every third one (the benchmark's
    own spans hold none): what the prefilter check runs on."""
    count, body = next(request_bodies(spans, spans, seed=11))
    request = ExportTraceServiceRequest.FromString(body)
    for index, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
        if index % 3 == 0:
            attribute = span.attributes.add()
            attribute.key, attribute.value.string_value = "note", _PII[(index // 3) % len(_PII)]
    return [(count, request.SerializeToString())]


# --- main --------------------------------------------------------------------------------------------------------


def _report(name: str, runs: list[Stages], spans: int) -> tuple[float, list[str]]:
    names = list(runs[0].cpu)
    median = {stage: statistics.median(run.cpu.get(stage, 0.0) for run in runs) for stage in names}
    total = statistics.median(sum(run.cpu.values()) for run in runs)
    lines = [f"{name:34} {total / spans * 100_000:10.2f} {spans / total:13,.0f}"]
    for stage in names:
        rate = f"{spans / median[stage]:13,.0f}" if median[stage] else f"{'inf':>13}"
        lines.append(f"  {stage:32} {median[stage] / spans * 100_000:10.2f} {rate}")
    return total, lines


def main() -> None:
    args, bodies, spans = workload(__doc__ or "")
    print(f"{'mode / stage':34} {'CPU s/100k':>10} {'spans/s/core':>13}")
    with tempfile.TemporaryDirectory(prefix="agentledger-native-") as folder:
        dsn = chdb_dsn(Path(folder) / "clickhouse")
        results: dict[str, tuple[float, list[str]]] = {}
        counted: dict[str, dict[str, int]] = {}
        flagged_keys: dict[str, set[str]] = {}
        python_runs = []
        for repeat in range(args.repeats):
            stages, stored = run_once(bodies, args.batch_max_spans, f"python_{repeat}", dsn)
            if stored != spans:
                raise SystemExit(f"python: only {stored} of {spans} spans were stored and chained")
            python_runs.append(stages)
        # ingest_stages names the digests indented: they are inside export, not added to the total.
        for run in python_runs:
            run.cpu = {name.strip(): seconds for name, seconds in run.cpu.items() if not name.startswith(" ")}
        results["python"] = _report("python (ingest_stages)", python_runs, spans)
        modes = ("native decode only", "native", "native+digests", "native+prefilter hyperscan", "native+prefilter re2")
        for mode in modes:
            runs = []
            for repeat in range(args.repeats):
                spool = Path(folder) / f"spool-{mode}-{repeat}"
                spool.mkdir()
                database = f"{re.sub('[+ ]', '_', mode)}_{repeat}"
                stages, stored, counts, flagged = run_native(bodies, args.batch_max_spans, database, dsn, spool, mode)
                if stored != (0 if mode == "native decode only" else spans):
                    raise SystemExit(f"{mode}: {stored} of {spans} spans were stored"
                                     f"{' and chained' if '+' in mode else ''}")  # fmt: skip
                runs.append(stages)
                if mode.startswith("native+prefilter"):
                    counted[mode] = counts
                    flagged_keys[mode] = flagged
            results[mode] = _report(mode, runs, spans)
        client = connect(dsn, "python_0")
        client.set_client_setting("use_query_condition_cache", 0)
        batches = python_batches(bodies, args.batch_max_spans, client)
        for name, (codec, views) in _FLOORS.items():
            runs = []
            for repeat in range(args.repeats):
                stages, stored = run_floor(batches, f"floor_{codec}_{int(views)}_{repeat}", dsn, codec, views)
                if stored != spans:
                    raise SystemExit(f"{name}: only {stored} of {spans} spans were stored")
                runs.append(stages)
            results[name] = _report(name, runs, spans)
        for _, lines in results.values():
            print("\n".join(lines))
        print(
            f"stored: all {spans} spans in each mode and repeat ({args.repeats});"
            " chained in python and native+digests/prefilter"
        )
        python_db, native_db = f"python_{args.repeats - 1}", f"native_digests_{args.repeats - 1}"
        both, differences = column_differences(client, python_db, f"native_{args.repeats - 1}")
        listed = ", ".join(f"{name} ({count})" for name, count in differences.items()) or "none"
        print(f"native vs python rows: {both} spans in both; {len(SPAN_SCHEMA.names) - len(differences)} of"
              f" {len(SPAN_SCHEMA.names)} columns equal on every span; differing: {listed}")  # fmt: skip
        both, differences = column_differences(client, python_db, native_db)
        listed = ", ".join(f"{name} ({count})" for name, count in differences.items()) or "none"
        print(f"native+digests vs python rows: {both} spans in both; differing: {listed}")
        sql_chain, python_of_native = chained_digests(client, native_db), python_digests_of_stored(client, native_db)
        same = sum(1 for key, digest in sql_chain.items() if python_of_native.get(key) == digest)
        if same != len(python_of_native) or len(sql_chain) != spans:
            raise SystemExit(f"SQL digests equal the Python digests of the same stored rows on {same} of {spans} spans")
        python_chain = chained_digests(client, python_db)
        across = sum(1 for key, digest in sql_chain.items() if python_chain.get(key) == digest)
        print(f"digests: SQL (digest_sql) == Python (span_digest) on all {same} stored native rows;"
              f" native chain == python chain on {across} of {spans} spans")  # fmt: skip
        redacted = {str(key) for (key,) in client.query(
            f"SELECT concat(trace_id, ':', span_id) FROM {python_db}.spans WHERE mapContains(attributes,"
            f" {_quoted(SUMMARY_KEY)})").result_rows}  # fmt: skip
        for mode, counts in counted.items():
            missed = redacted - flagged_keys[mode]
            if missed:
                raise SystemExit(f"{mode}: {len(missed)} span(s) the Python path redacted were not flagged")
            print(f"{mode} (last run): {counts['needs_redaction (prefilter)']} of {spans} rows flagged for Python"
                  f" redaction ({prefilter_sql(mode.split()[-1])[1]} patterns), every one of the {len(redacted)} the"
                  f" Python path redacted among them; {counts['needs_python (decoder)']} flagged for the Python"
                  " decoder")  # fmt: skip
        print(decoder_parity(client, dsn, Path(folder)))
        # The benchmark's spans hold no personal data: the prefilter's cover is checked on seeded spans too.
        seeded = pii_bodies()
        _, stored = run_once(seeded, 1000, "python_pii", dsn)
        redacted = {str(key) for (key,) in client.query(
            "SELECT concat(trace_id, ':', span_id) FROM python_pii.spans WHERE mapContains(attributes,"
            f" {_quoted(SUMMARY_KEY)})").result_rows}  # fmt: skip
        covered = []
        for mode in ("native+prefilter hyperscan", "native+prefilter re2"):
            seeded_spool = Path(folder) / f"spool-pii-{mode.split()[-1]}"
            seeded_spool.mkdir()
            _, _, _, flagged = run_native(seeded, 1000, f"pii_{mode.split()[-1]}", dsn, seeded_spool, mode)
            if not redacted or redacted - flagged:
                raise SystemExit(f"{mode}: of {len(redacted)} seeded spans Python redacted, {len(redacted - flagged)}"
                                 " were not flagged")  # fmt: skip
            covered.append(f"{mode.split()[-1]} flagged {len(flagged)}")
        print(f"prefilter on {stored} seeded spans ({len(_PII)} kinds of personal data and secrets in every third):"
              f" python redacted {len(redacted)}, all flagged; {', '.join(covered)}")  # fmt: skip
        client.close()
    best = min(("native+prefilter hyperscan", "native+prefilter re2"), key=lambda mode: results[mode][0])
    print(f"per collector core (spans / CPU second): python {spans / results['python'][0]:.0f},"
          f" {best} {spans / results[best][0]:.0f} spans/s")  # fmt: skip


if __name__ == "__main__":
    main()
