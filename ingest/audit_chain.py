"""The audit record over stored spans: versioned span digests (v1, v2, v3), chain links (v1 and v2), and
the writer that appends each collector's links to its log and checkpoints the log's Merkle root
(ingest/checkpoints.py).

The algorithms are documented in schema/AUDIT_CHAIN.md so an auditor can recompute them without our code:
everything here must stay in step with that document (a test recomputes its example vectors).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from agentledger.ingest.checkpoints import Checkpoint, CheckpointSink
from agentledger.ingest.merkle import CompactRange, leaf_hash, root_text
from agentledger.ingest.signing import LinkSigner
from agentledger.schema.canonical import (
    HASH_PREFIX,
    compact_json,
    int_field,
    ints_field,
    pairs_field,
    sha256_text,
    strings_field,
    text_field,
)

CHAIN_TABLE: Final = "audit_chain"
CONFLICTS_TABLE: Final = "span_conflicts"
GENESIS: Final = "sha256:" + "0" * 64

LINK_FORMAT_V1: Final = 1
LINK_FORMAT_V2: Final = 2
LINK_V2_TAG: Final = "agentledger.link"
DIGEST_V1: Final = 1
DIGEST_V2: Final = 2
DIGEST_V3: Final = 3
CURRENT_DIGEST_VERSION: Final = DIGEST_V3

FieldKind = Literal["text", "int", "bool", "time", "texts", "times", "map", "maps"]

# Frozen: the span columns a v1 digest covers, in order (the spans table as of migration 0007). A column
# added later is not part of v1, so v1 chains keep verifying; it joins the digest in a new version.
DIGEST_FIELDS_V1: Final[tuple[str, ...]] = (
    "tenant", "run_id", "trace_id", "span_id", "parent_span_id", "start_time", "end_time", "duration_ns", "name",
    "kind", "status_code", "status_message", "service_name", "scope_name", "scope_version", "verified_agent_id",
    "identity_mismatch", "truncated", "approver", "approval_decision", "provenance", "policy_decision", "policy_id",
    "context_hash", "run_outcome", "entry_type", "tool_access", "arguments_hash", "target", "write_ref",
    "write_system", "agent_id", "agent_name", "input_messages", "operation", "output_messages", "model",
    "retrieval_documents", "system_instructions", "tool_arguments", "tool_call_id", "tool_result", "tool_name",
    "input_tokens", "output_tokens", "input_value", "output_value", "attributes", "resource_attributes",
    "event_times", "event_names", "event_attributes", "link_trace_ids", "link_span_ids", "link_attributes",
)

# Frozen: the columns of a v2 digest and how each is encoded (AUDIT_CHAIN.md, "Span digest v2").
DIGEST_FIELDS_V2_KINDS: Final[tuple[tuple[str, FieldKind], ...]] = (
    ("tenant", "text"), ("run_id", "text"), ("trace_id", "text"), ("span_id", "text"), ("parent_span_id", "text"),
    ("start_time", "time"), ("end_time", "time"), ("duration_ns", "int"), ("name", "text"), ("kind", "text"),
    ("status_code", "text"), ("status_message", "text"), ("service_name", "text"), ("scope_name", "text"),
    ("scope_version", "text"), ("verified_agent_id", "text"), ("identity_mismatch", "bool"), ("truncated", "texts"),
    ("approver", "text"), ("approval_decision", "text"), ("provenance", "text"), ("policy_decision", "text"),
    ("policy_id", "text"), ("context_hash", "text"), ("run_outcome", "text"), ("entry_type", "text"),
    ("tool_access", "text"), ("arguments_hash", "text"), ("target", "text"), ("write_ref", "text"),
    ("write_system", "text"), ("agent_id", "text"), ("agent_name", "text"), ("input_messages", "text"),
    ("operation", "text"), ("output_messages", "text"), ("model", "text"), ("retrieval_documents", "text"),
    ("system_instructions", "text"), ("tool_arguments", "text"), ("tool_call_id", "text"), ("tool_result", "text"),
    ("tool_name", "text"), ("input_tokens", "int"), ("output_tokens", "int"), ("input_value", "text"),
    ("output_value", "text"), ("attributes", "map"), ("resource_attributes", "map"), ("event_times", "times"),
    ("event_names", "texts"), ("event_attributes", "maps"), ("link_trace_ids", "texts"), ("link_span_ids", "texts"),
    ("link_attributes", "maps"),
)
DIGEST_FIELDS_V2: Final[tuple[str, ...]] = tuple(name for name, _ in DIGEST_FIELDS_V2_KINDS)
# Frozen: v2's fields and encoding, then the columns added since (AUDIT_CHAIN.md, "Span digest v3"):
# conversation_id (migration 0011).
DIGEST_FIELDS_V3_KINDS: Final[tuple[tuple[str, FieldKind], ...]] = (
    *DIGEST_FIELDS_V2_KINDS, ("conversation_id", "text"),
)  # fmt: skip
DIGEST_FIELDS_V3: Final[tuple[str, ...]] = tuple(name for name, _ in DIGEST_FIELDS_V3_KINDS)
# The typed (length-prefixed) digest versions and their fields' kinds: v2 onwards share one encoding.
DIGEST_KINDS: Final[Mapping[int, tuple[tuple[str, FieldKind], ...]]] = {
    DIGEST_V2: DIGEST_FIELDS_V2_KINDS, DIGEST_V3: DIGEST_FIELDS_V3_KINDS,
}  # fmt: skip
DIGEST_FIELDS: Final[Mapping[int, tuple[str, ...]]] = {
    DIGEST_V1: DIGEST_FIELDS_V1, DIGEST_V2: DIGEST_FIELDS_V2, DIGEST_V3: DIGEST_FIELDS_V3,
}  # fmt: skip
# Every column some digest version reads, in a stable order (what verification selects).
DIGEST_COLUMNS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(name for names in DIGEST_FIELDS.values() for name in names)
)
_V1_MAP_FIELDS: Final = frozenset({"attributes", "resource_attributes"})
_V1_MAP_LIST_FIELDS: Final = frozenset({"event_attributes", "link_attributes"})


class DigestVersionError(ValueError):
    """A link names a digest or link format this version of agentledger does not know."""


def span_key(trace_id: str, span_id: str) -> str:
    return f"{trace_id}:{span_id}"


# --- span digest v1: JCS of the values array --------------------------------------------------------------


def _pairs(value: Any) -> list[list[str]]:
    items = value.items() if isinstance(value, Mapping) else value
    return sorted([str(k), str(v)] for k, v in items)


def canonical_row(row: Mapping[str, Any]) -> list[Any]:
    """A span as the v1 digest hashes it: DIGEST_FIELDS_V1 in order, maps as sorted [key, value] pairs,
    times as integer nanoseconds."""
    values: list[Any] = []
    for name in DIGEST_FIELDS_V1:
        value = row[name]
        if name in _V1_MAP_FIELDS:
            value = _pairs(value)
        elif name in _V1_MAP_LIST_FIELDS:
            value = [_pairs(item) for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        values.append(value)
    return values


def span_digest_v1(row: Mapping[str, Any]) -> str:
    return sha256_text(compact_json(canonical_row(row)))


# --- span digests v2 and v3: length-prefixed typed fields (DIGEST_KINDS) --------------------------------


def _map_items(value: Any) -> list[tuple[str, str]]:
    items = value.items() if isinstance(value, Mapping) else value
    return [(str(k), str(v)) for k, v in items]


def _encoder(kind: FieldKind) -> Callable[[Any], bytes]:
    if kind == "text":
        return lambda value: text_field(value)
    if kind in ("int", "time"):
        return lambda value: int_field(int(value))
    if kind == "bool":
        return lambda value: int_field(1 if value else 0)
    if kind == "texts":
        return lambda value: strings_field(list(value))
    if kind == "times":
        return lambda value: ints_field([int(item) for item in value])
    if kind == "map":
        return lambda value: pairs_field(_map_items(value))
    return lambda value: int_field(len(value)) + b"".join(pairs_field(_map_items(item)) for item in value)


_ENCODERS: Final[Mapping[int, tuple[tuple[str, Callable[[Any], bytes]], ...]]] = {
    version: tuple((name, _encoder(kind)) for name, kind in kinds) for version, kinds in DIGEST_KINDS.items()
}


def _kinds(version: int) -> tuple[tuple[str, FieldKind], ...]:
    kinds = DIGEST_KINDS.get(version)
    if kinds is None:
        raise DigestVersionError(f"unknown span digest version {version}")
    return kinds


def span_digest_typed(row: Mapping[str, Any], version: int) -> str:
    """A typed digest (v2, v3, …) of a row: times (and event times) as integer nanoseconds; maps as
    (key, value) pairs or dicts."""
    _kinds(version)
    return sha256_text(b"".join(encode(row[name]) for name, encode in _ENCODERS[version]))


def span_digest_v2(row: Mapping[str, Any]) -> str:
    return span_digest_typed(row, DIGEST_V2)


def span_digest_v3(row: Mapping[str, Any]) -> str:
    return span_digest_typed(row, DIGEST_V3)


def span_digest(row: Mapping[str, Any], version: int = CURRENT_DIGEST_VERSION) -> str:
    if version == DIGEST_V1:
        return span_digest_v1(row)
    return span_digest_typed(row, version)


def _python_column(batch: pa.Table, name: str) -> list[Any]:
    column = batch.column(name)
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.int64())
    elif pa.types.is_list(column.type) and pa.types.is_timestamp(column.type.value_type):
        column = pc.cast(column, pa.list_(pa.int64()))
    values: list[Any] = column.to_pylist()
    return values


# Rows serialised at once by digests_of_batch: large enough that the per-column kernel calls stay cheap.
DIGEST_SLICE_ROWS: Final = 4096


def digests_of_batch(batch: pa.Table, version: int = CURRENT_DIGEST_VERSION) -> list[str]:
    """span_digest of every row, computed column-wise without per-span dicts (the export hot path;
    span_digest serves verification, and tests hold the two equal)."""
    if version == DIGEST_V1:
        return _digests_v1(batch)
    # Slice by slice: each column is combined and every row's serialisation joined, which copies the content
    # twice over; per slice that is a few MiB at a time instead of twice the whole batch (~110 MiB per
    # 20,000 agent spans) on top of the batch. A row's digest depends on that row alone.
    digests: list[str] = []
    for offset in range(0, batch.num_rows, DIGEST_SLICE_ROWS):
        digests += _digests_of_rows(batch.slice(offset, DIGEST_SLICE_ROWS), version)
    return digests


def _digests_of_rows(batch: pa.Table, version: int) -> list[str]:
    kinds = _kinds(version)
    # Text, number and text-list columns are encoded by Arrow kernels (no Python string per value): the
    # same bytes as the encoders, which serve the rest (maps, time lists) and the row-wise span_digest_typed.
    # A text field's netstring pieces (length, ':', value, ',') go straight into the one join of the row's
    # fields, so the large content values are copied once, not once per netstring and again per join.
    parts: list[pa.Array | pa.Scalar] = []
    for (name, kind), (_, encode) in zip(kinds, _ENCODERS[version], strict=True):
        column = batch.column(name).combine_chunks()
        if kind == "text":
            parts += [pc.cast(pc.cast(pc.binary_length(column), pa.string()), pa.binary()), _COLON,
                      pc.cast(column, pa.binary()), _COMMA]  # fmt: skip
        elif kind in _ARROW_KINDS:
            parts.append(pc.cast(_arrow_field(column, kind), pa.binary()))
        elif _all_empty(column):  # every row empty: one constant field
            parts.append(pa.scalar(_EMPTY_ARRAY_FIELD, pa.binary()))
        else:
            parts.append(pa.array([encode(value) for value in _python_column(batch, name)], pa.binary()))
    if not batch.num_rows:
        return []
    joined = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.binary()))
    return _sha256_each(joined)


def _sha256_each(values: pa.BinaryArray) -> list[str]:
    """sha256_text of every value, hashed from Arrow's buffer without a Python bytes object per value."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    data = memoryview(values.buffers()[2] or b"")
    bounds = offsets.tolist()
    sha256 = hashlib.sha256
    return [HASH_PREFIX + sha256(data[bounds[row] : bounds[row + 1]]).hexdigest() for row in range(len(values))]


_COLON: Final = pa.scalar(b":", pa.binary())
_COMMA: Final = pa.scalar(b",", pa.binary())
_ARROW_KINDS: Final = frozenset({"text", "int", "time", "bool", "texts", "map"})
_EMPTY_ARRAY_FIELD: Final = int_field(0)


def _map_fields(column: pa.MapArray) -> pa.Array:
    """Each map as its pair count, then key and value fields of its pairs sorted by key then value: the
    pairs of all maps sorted at once by (row, key, value); Arrow compares strings by their UTF-8 bytes, the
    order pairs_field uses."""
    offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    sizes = np.diff(offsets)
    pairs = pa.table({
        "row": np.repeat(np.arange(len(column), dtype=np.int64), sizes),
        "key": column.keys.slice(first, last - first),
        "value": column.items.slice(first, last - first),
    })  # fmt: skip
    order = pc.sort_indices(pairs, sort_keys=[("row", "ascending"), ("key", "ascending"), ("value", "ascending")])
    ordered = pairs.take(order)
    entry_fields = pc.binary_join_element_wise(
        _netstrings(ordered.column("key").combine_chunks()), _netstrings(ordered.column("value").combine_chunks()), ""
    )
    per_map = pa.ListArray.from_arrays(pa.array(offsets - first, pa.int32()), entry_fields)
    counts = _netstrings(pc.cast(pa.array(sizes), pa.string()))
    return pc.binary_join_element_wise(counts, pc.binary_join(per_map, ""), "")


def _all_empty(column: pa.Array) -> bool:
    offsets = column.offsets  # lists and maps alike
    return len(column) == 0 or offsets[0].as_py() == offsets[-1].as_py()


def _netstrings(values: pa.Array) -> pa.Array:
    """`<byte length>:<bytes>,` for every value of a string array."""
    lengths = pc.cast(pc.binary_length(values), pa.string())
    return pc.binary_join_element_wise(lengths, ":", values, ",", "")


def _arrow_field(column: pa.Array, kind: FieldKind) -> pa.Array:
    if kind == "text":
        return _netstrings(column)
    if kind == "time":
        return _netstrings(pc.cast(pc.cast(column, pa.int64()), pa.string()))
    if kind == "bool":
        return _netstrings(pc.cast(pc.cast(column, pa.int8()), pa.string()))
    if kind == "int":
        return _netstrings(pc.cast(column, pa.string()))
    if kind == "map":
        return _map_fields(column)
    # texts: the count as a field, then each element as a field
    elements = pa.ListArray.from_arrays(column.offsets, _netstrings(column.values))
    counts = _netstrings(pc.cast(pc.list_value_length(column), pa.string()))
    return pc.binary_join_element_wise(counts, pc.binary_join(elements, ""), "")


def _digests_v1(batch: pa.Table) -> list[str]:
    ordered = [_python_column(batch, name) for name in DIGEST_FIELDS_V1]
    map_positions = [index for index, name in enumerate(DIGEST_FIELDS_V1) if name in _V1_MAP_FIELDS]
    map_list_positions = [index for index, name in enumerate(DIGEST_FIELDS_V1) if name in _V1_MAP_LIST_FIELDS]
    digests = []
    for values in zip(*ordered, strict=True):
        row = list(values)
        for index in map_positions:
            row[index] = sorted(row[index])
        for index in map_list_positions:
            row[index] = [sorted(item) for item in row[index]]
        digests.append(sha256_text(compact_json(row)))
    return digests


def rows_of_batch(batch: pa.Table) -> list[dict[str, Any]]:
    """Python rows of an Arrow span batch with times as integer nanoseconds (as the digests want)."""
    columns = {name: _python_column(batch, name) for name in batch.schema.names}
    return [{name: values[index] for name, values in columns.items()} for index in range(batch.num_rows)]


def _sql_field(expression: str) -> str:
    return f"concat(toString(length({expression})), ':', {expression}, ',')"


def _sql_pairs(map_expression: str, var: str) -> str:
    pair = f"{var}p"
    return (f"concat({_sql_field(f'toString(length(mapKeys({map_expression})))')}, arrayStringConcat(arrayMap("
            f"{pair} -> concat({_sql_field(f'{pair}.1')}, {_sql_field(f'{pair}.2')}),"
            f" arraySort(arrayZip(mapKeys({map_expression}), mapValues({map_expression}))))))")  # fmt: skip


def _sql_encoding(name: str, kind: FieldKind) -> str:
    count = _sql_field(f"toString(length({name}))")
    if kind == "text":
        return _sql_field(name)
    if kind == "int":
        return _sql_field(f"toString({name})")
    if kind == "bool":
        return _sql_field(f"toString(toUInt8({name}))")
    if kind == "time":
        return _sql_field(f"toString(toUnixTimestamp64Nano({name}))")
    if kind == "texts":
        return f"concat({count}, arrayStringConcat(arrayMap(x -> {_sql_field('x')}, {name})))"
    if kind == "times":
        nanos = _sql_field("toString(toUnixTimestamp64Nano(x))")
        return f"concat({count}, arrayStringConcat(arrayMap(x -> {nanos}, {name})))"
    if kind == "map":
        return _sql_pairs(name, "m")
    return f"concat({count}, arrayStringConcat(arrayMap(m -> {_sql_pairs('m', 'm')}, {name})))"


def digest_sql(version: int = CURRENT_DIGEST_VERSION) -> str:
    """A typed span digest (v2, v3, …) as a ClickHouse expression over a spans row: the same bytes as
    span_digest_typed, so digests can be computed where the spans are (a test holds the two equal)."""
    parts = ", ".join(_sql_encoding(name, kind) for name, kind in _kinds(version))
    return f"concat('sha256:', lower(hex(SHA256(concat({parts})))))"


# --- links ------------------------------------------------------------------------------------------------


def chain_link_v1(
    prev_link: str, batch_time_ns: int, keys: Sequence[str], digests: Sequence[str], retain_until: Sequence[int]
) -> str:
    entries = [[k, d, r] for k, d, r in zip(keys, digests, retain_until, strict=True)]
    return sha256_text(compact_json([prev_link, batch_time_ns, entries]))


@dataclass(frozen=True)
class ChainLink:
    tenant: str
    run_id: str
    seq: int
    kind: str
    batch_time_ns: int
    span_keys: tuple[str, ...]
    span_digests: tuple[str, ...]
    span_retain_until: tuple[int, ...]
    prev_link: str
    link: str
    note: str = ""
    collector_id: str = ""
    log_index: int = 0
    digest_version: int = DIGEST_V1
    format_version: int = LINK_FORMAT_V1
    signature: str = ""

    def recomputed(self) -> str:
        """The link hash its contents give under its own format version."""
        if self.format_version == LINK_FORMAT_V1:
            return chain_link_v1(self.prev_link, self.batch_time_ns, self.span_keys, self.span_digests,
                                 self.span_retain_until)  # fmt: skip
        if self.format_version == LINK_FORMAT_V2:
            return sha256_text(link_v2_bytes(self))
        raise DigestVersionError(f"unknown link format version {self.format_version}")


def link_v2_bytes(link: ChainLink) -> bytes:
    """Every field of a v2 link, so nothing of it (kind, note, position) can change without the hash."""
    # text_field(key) + text_field(digest) + int_field(until), inlined: a link has an entry per span.
    parts = []
    for key, digest, until in zip(link.span_keys, link.span_digests, link.span_retain_until, strict=True):
        key_bytes, digest_bytes, until_bytes = key.encode("utf-8"), digest.encode("utf-8"), b"%d" % until
        parts.append(b"%d:%b,%d:%b,%d:%b," % (len(key_bytes), key_bytes, len(digest_bytes), digest_bytes,
                                             len(until_bytes), until_bytes))  # fmt: skip
    entries = b"".join(parts)
    return b"".join([
        text_field(LINK_V2_TAG), int_field(LINK_FORMAT_V2), text_field(link.tenant), text_field(link.run_id),
        text_field(link.collector_id), int_field(link.log_index), int_field(link.seq), text_field(link.kind),
        text_field(link.note), int_field(link.digest_version), int_field(link.batch_time_ns),
        text_field(link.prev_link), int_field(len(link.span_keys)), entries,
    ])  # fmt: skip


def link_from_row(row: Mapping[str, Any]) -> ChainLink:
    """A stored audit_chain row (queries select these columns) as a ChainLink."""
    return ChainLink(
        tenant=str(row["tenant"]), run_id=str(row["run_id"]), seq=int(row["seq"]), kind=str(row["kind"]),
        batch_time_ns=int(row["batch_time_ns"]), span_keys=tuple(row["span_keys"]),
        span_digests=tuple(row["span_digests"]), span_retain_until=tuple(int(v) for v in row["span_retain_until"]),
        prev_link=str(row["prev_link"]), link=str(row["link"]), note=str(row["note"]),
        collector_id=str(row["collector_id"]), log_index=int(row["log_index"]),
        digest_version=int(row["digest_version"]), format_version=int(row["format_version"]),
        signature=str(row["signature"]),
    )  # fmt: skip


CHAIN_COLUMNS: Final = (
    "tenant", "run_id", "seq", "kind", "batch_time_ns", "span_keys", "span_digests", "span_retain_until", "note",
    "prev_link", "link", "signature", "format_version", "digest_version", "collector_id", "log_index",
)  # fmt: skip


# --- the writer -------------------------------------------------------------------------------------------

_LOG = """
SELECT log_index, run_id, seq, link
FROM audit_chain
WHERE tenant = {tenant:String} AND collector_id = {collector_id:String} AND format_version >= 2
ORDER BY log_index
"""

_CHECKPOINTED = """
SELECT max(size) FROM audit_checkpoints WHERE tenant = {tenant:String} AND collector_id = {collector_id:String}
"""

# What the batch's spans were chained as, by any collector (stored spans are immutable).
_CHAINED = """
SELECT run_id, key, digest_version, digest
FROM audit_chain
ARRAY JOIN span_keys AS key, span_digests AS digest
WHERE tenant = {tenant:String} AND run_id IN {runs:Array(String)} AND kind = 'spans'
  AND splitByChar(':', key)[1] IN {trace_ids:Array(String)}
"""


@dataclass
class _Log:
    """What the writer knows of its own log in one tenant: loaded once from the table, then kept."""

    frontier: CompactRange = field(default_factory=CompactRange)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    checkpointed: int = 0
    checkpointed_ns: int = 0


@dataclass(frozen=True)
class Screened:
    """A batch sorted against what is already chained: rows to store, exact re-sends to drop, and
    re-sends with different content (conflicts) that must not replace the stored span."""

    keep: list[bool]
    conflicts: list[tuple[int, str, int]]  # (row, chained digest, its digest version)
    duplicates: int


class ChainWriter:
    """Appends links to this collector's log, one per run per stored batch, and checkpoints the log.

    Each (tenant, collector_id) log is written by one writer: its size, Merkle frontier and per-run heads
    live in memory, loaded from the table on first use and reloaded after any failed insert (the insert
    may have landed). Several collectors (distinct ids) write the same run without any shared lock."""

    def __init__(
        self,
        client: Client,
        collector_id: str,
        signer: LinkSigner | None = None,
        sink: CheckpointSink | None = None,
        clock: Callable[[], int] | None = None,
        checkpoint_interval_ns: int = 0,
    ) -> None:
        self._client = client
        self._interval_ns = checkpoint_interval_ns
        self.collector_id = collector_id
        self._signer = signer
        self._sink = sink
        self._clock = clock or time.time_ns
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()

    # The lock serialises the few callers a writer has (the query API's deletions); an exporter's writer
    # is used by its one export worker.

    def _log(self, tenant: str) -> _Log:
        log = self._logs.get(tenant)
        if log is None:
            log = _Log()
            parameters = {"tenant": tenant, "collector_id": self.collector_id}
            for _, run_id, seq, link in self._client.query(_LOG, parameters=parameters).result_rows:
                log.frontier.append(leaf_hash(str(link)))
                log.heads[str(run_id)] = (int(seq), str(link))
            rows = self._client.query(_CHECKPOINTED, parameters=parameters).result_rows
            log.checkpointed = int(rows[0][0]) if rows and rows[0][0] is not None else 0
            self._logs[tenant] = log
        return log

    def screen(self, batch: pa.Table, digests: Sequence[str]) -> Screened:
        """One lookup per tenant in the batch: which rows are new, exact re-sends, or conflicting."""
        tenants, run_ids = batch["tenant"].to_pylist(), batch["run_id"].to_pylist()
        trace_ids, span_ids = batch["trace_id"].to_pylist(), batch["span_id"].to_pylist()
        chained: dict[tuple[str, str, str], tuple[int, str]] = {}
        for tenant in sorted(set(tenants)):
            rows = [i for i, t in enumerate(tenants) if t == tenant]
            parameters = {"tenant": tenant, "runs": sorted({run_ids[i] for i in rows}),
                          "trace_ids": sorted({trace_ids[i] for i in rows})}  # fmt: skip
            for run_id, key, version, digest in self._client.query(_CHAINED, parameters=parameters).result_rows:
                chained.setdefault((tenant, str(run_id), str(key)), (int(version), str(digest)))
        keep, conflicts, duplicates = [True] * batch.num_rows, [], 0
        seen: dict[tuple[str, str, str], str] = {}
        span_rows: list[dict[str, Any]] | None = None
        identities = zip(tenants, run_ids, trace_ids, span_ids, strict=True)
        for index, (tenant, run_id, trace_id, span_id) in enumerate(identities):
            identity = (tenant, run_id, span_key(trace_id, span_id))
            earlier = chained.get(identity)
            if earlier is None:
                first = seen.get(identity)
                if first is None:
                    seen[identity] = digests[index]
                    continue
                keep[index] = False  # the span twice in one batch: the first copy is the one stored
                if first == digests[index]:
                    duplicates += 1
                else:
                    conflicts.append((index, first, CURRENT_DIGEST_VERSION))
                continue
            version, digest = earlier
            mine = digests[index]
            if version != CURRENT_DIGEST_VERSION:  # chained under an older version: compare under that one
                span_rows = span_rows if span_rows is not None else rows_of_batch(batch)
                mine = span_digest(span_rows[index], version)
            keep[index] = False
            if mine == digest:
                duplicates += 1
            else:
                conflicts.append((index, digest, version))
        return Screened(keep, conflicts, duplicates)

    def links_for(
        self, batch: pa.Table, batch_time_ns: int, retain_until: Sequence[int], digests: Sequence[str] | None = None
    ) -> list[ChainLink]:
        """One link per run in the batch; retain_until holds each row's retention end (unix seconds)."""
        digests = digests_of_batch(batch) if digests is None else digests
        groups: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        identity = zip(
            batch["tenant"].to_pylist(), batch["run_id"].to_pylist(), batch["trace_id"].to_pylist(),
            batch["span_id"].to_pylist(), digests, retain_until, strict=True,
        )  # fmt: skip
        for tenant, run_id, trace_id, span_id, digest, until in identity:
            groups.setdefault((tenant, run_id), []).append((span_key(trace_id, span_id), digest, int(until)))
        return [self._draft(tenant, run_id, "spans", batch_time_ns, "", entries)
                for (tenant, run_id), entries in sorted(groups.items())]  # fmt: skip

    def tombstone_for(
        self, tenant: str, run_id: str, deleted: Sequence[tuple[str, str]], batch_time_ns: int, note: str
    ) -> list[ChainLink]:
        """A link recording that these (span key, digest) pairs are deleted on request, and why."""
        return [self._draft(tenant, run_id, "tombstone", batch_time_ns, note, [(k, d, 0) for k, d in deleted])]

    def _draft(
        self, tenant: str, run_id: str, kind: str, batch_time_ns: int, note: str, entries: list[tuple[str, str, int]]
    ) -> ChainLink:
        entries = sorted(entries)
        return ChainLink(tenant=tenant, run_id=run_id, seq=0, kind=kind, batch_time_ns=batch_time_ns,
                         span_keys=tuple(k for k, _, _ in entries), span_digests=tuple(d for _, d, _ in entries),
                         span_retain_until=tuple(u for _, _, u in entries), prev_link="", link="", note=note,
                         collector_id=self.collector_id, digest_version=CURRENT_DIGEST_VERSION,
                         format_version=LINK_FORMAT_V2)  # fmt: skip

    def append(self, drafts: Iterable[ChainLink]) -> list[ChainLink]:
        """Places the drafts in this collector's logs (log index, per-run seq and prev_link), hashes,
        signs and inserts them, and checkpoints every log that grew. Returns the links as stored.

        No deduplication token: a replayed batch is screened against the chain first, so it brings no
        new link, and a token could drop a different block that happened to share it."""
        with self._lock:
            drafts = list(drafts)
            try:
                links = self._place(drafts)
                if links:
                    self._client.insert(CHAIN_TABLE, [_row(link) for link in links], column_names=list(CHAIN_COLUMNS))
            except BaseException:
                self._logs.clear()  # the insert may have landed: reread the logs before the next one
                raise
            for link in links:
                log = self._logs[link.tenant]
                log.frontier.append(leaf_hash(link.link))
                log.heads[link.run_id] = (link.seq, link.link)
            for tenant in sorted({link.tenant for link in drafts}):
                self._checkpoint(tenant)
            return links

    def _place(self, drafts: list[ChainLink]) -> list[ChainLink]:
        links = []
        sizes: dict[str, int] = {}
        heads: dict[tuple[str, str], tuple[int, str]] = {}
        for draft in drafts:
            log = self._log(draft.tenant)
            index = sizes.get(draft.tenant, log.frontier.size)
            sizes[draft.tenant] = index + 1
            seq, prev = heads.get((draft.tenant, draft.run_id), log.heads.get(draft.run_id, (0, GENESIS)))
            placed = ChainLink(**{**draft.__dict__, "seq": seq + 1, "prev_link": prev, "log_index": index})
            link = placed.recomputed()
            placed = ChainLink(**{**placed.__dict__, "link": link,
                                  "signature": self._signer.sign(link) if self._signer else ""})  # fmt: skip
            heads[(draft.tenant, draft.run_id)] = (placed.seq, link)
            links.append(placed)
        return links

    def checkpoint_pending(self, tenants: Iterable[str] | None = None, force: bool = False) -> None:
        """Checkpoints logs that grew without one (a checkpoint insert failed after its links landed, or
        the interval held it back); `force` ignores the interval (at shutdown). None: every loaded log."""
        with self._lock:
            for tenant in sorted(set(self._logs if tenants is None else tenants)):
                self._checkpoint(tenant, force)

    def _checkpoint(self, tenant: str, force: bool = False) -> None:
        log = self._log(tenant)
        if log.frontier.size <= log.checkpointed:
            return
        now = self._clock()
        if not force and self._interval_ns and now - log.checkpointed_ns < self._interval_ns:
            return
        checkpoint = Checkpoint(tenant, self.collector_id, log.frontier.size, root_text(log.frontier.root()), now)
        if self._signer is not None:
            checkpoint = checkpoint.signed(self._signer.sign(checkpoint.hash()))
        # The file outside ClickHouse first: it is what someone with SQL access cannot rewrite.
        if self._sink is not None:
            self._sink.append(checkpoint)
        self._client.insert("audit_checkpoints", [checkpoint.row()], column_names=list(Checkpoint.COLUMNS))
        log.checkpointed, log.checkpointed_ns = checkpoint.size, now


def _row(link: ChainLink) -> list[Any]:
    return [link.tenant, link.run_id, link.seq, link.kind, link.batch_time_ns, list(link.span_keys),
            list(link.span_digests), list(link.span_retain_until), link.note, link.prev_link, link.link,
            link.signature, link.format_version, link.digest_version, link.collector_id, link.log_index]  # fmt: skip

