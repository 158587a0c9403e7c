"""The per-run hash chain over stored spans: span digests, chain links, and appending links at ingest.

The algorithm is documented in schema/AUDIT_CHAIN.md so an auditor can recompute it without our code:
everything here must stay in step with that document.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from agentledger.ingest.signing import LinkSigner
from agentledger.schema.span_columns import SPAN_SCHEMA

CHAIN_TABLE: Final = "audit_chain"
GENESIS: Final = "sha256:" + "0" * 64

# Every stored span column, in schema order, is part of the digest.
DIGEST_FIELDS: Final[tuple[str, ...]] = tuple(SPAN_SCHEMA.names)
_MAP_FIELDS: Final = frozenset(f.name for f in SPAN_SCHEMA if pa.types.is_map(f.type))
_MAP_LIST_FIELDS: Final = frozenset(
    f.name for f in SPAN_SCHEMA if pa.types.is_list(f.type) and pa.types.is_map(f.type.value_type)
)


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) for the values a span holds: strings, integers, booleans, arrays (no floats, no
    objects). For those, compact JSON without ASCII escaping is JCS; orjson writes exactly that (a
    property test compares it with json.dumps) several times faster, tuples as arrays."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers beyond 64 bits: the standard library handles them
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sha256_text(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pairs(value: Any) -> list[list[str]]:
    items = value.items() if isinstance(value, Mapping) else value
    return sorted([str(k), str(v)] for k, v in items)


def canonical_row(row: Mapping[str, Any]) -> list[Any]:
    """The span as the array that is hashed: DIGEST_FIELDS in order, maps as sorted [key, value] pairs,
    times as integer nanoseconds."""
    values: list[Any] = []
    for name in DIGEST_FIELDS:
        value = row[name]
        if name in _MAP_FIELDS:
            value = _pairs(value)
        elif name in _MAP_LIST_FIELDS:
            value = [_pairs(item) for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        values.append(value)
    return values


def span_digest(row: Mapping[str, Any]) -> str:
    return sha256_text(canonical_json(canonical_row(row)))


def span_key(trace_id: str, span_id: str) -> str:
    return f"{trace_id}:{span_id}"


def chain_link(
    prev_link: str, batch_time_ns: int, keys: Sequence[str], digests: Sequence[str], retain_until: Sequence[int]
) -> str:
    entries = [[k, d, r] for k, d, r in zip(keys, digests, retain_until, strict=True)]
    return sha256_text(canonical_json([prev_link, batch_time_ns, entries]))


def digests_of_batch(batch: pa.Table) -> list[str]:
    """span_digest of every row, computed column-wise: the same canonical arrays, built without dicts
    (the export hot path; span_digest serves verification, and tests hold the two equal)."""
    columns = _python_columns(batch)
    ordered = [columns[name] for name in DIGEST_FIELDS]
    map_positions = [index for index, name in enumerate(DIGEST_FIELDS) if name in _MAP_FIELDS]
    map_list_positions = [index for index, name in enumerate(DIGEST_FIELDS) if name in _MAP_LIST_FIELDS]
    digests = []
    for values in zip(*ordered, strict=True):
        row = list(values)
        for index in map_positions:
            row[index] = sorted(row[index])
        for index in map_list_positions:
            row[index] = [sorted(item) for item in row[index]]
        digests.append("sha256:" + hashlib.sha256(canonical_json(row)).hexdigest())
    return digests


def _python_columns(batch: pa.Table) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for field in SPAN_SCHEMA:
        column = batch.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = pc.cast(column, pa.int64())
        elif pa.types.is_list(field.type) and pa.types.is_timestamp(field.type.value_type):
            column = pc.cast(column, pa.list_(pa.int64()))
        columns[field.name] = column.to_pylist()
    return columns


def rows_of_batch(batch: pa.Table) -> list[dict[str, Any]]:
    """Python rows of an Arrow span batch with times as integer nanoseconds (as the digest wants)."""
    columns = _python_columns(batch)
    return [{name: columns[name][index] for name in DIGEST_FIELDS} for index in range(batch.num_rows)]


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


_HEADS = """
SELECT tenant, run_id, max(seq) AS head_seq, argMax(link, seq) AS head_link
FROM audit_chain
WHERE (tenant, run_id) IN {runs:Array(Tuple(String, String))}
GROUP BY tenant, run_id
"""


class ChainWriter:
    """Appends one link per run per exported batch. Used by one export worker at a time, which keeps
    each run's links in order. Heads are read from the table for every batch (one query), never cached:
    a replayed batch whose links ClickHouse drops as duplicates must not move a cached head."""

    def __init__(self, client: Client, signer: LinkSigner | None = None) -> None:
        self._client = client
        self._signer = signer

    def _heads(self, runs: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
        rows = self._client.query(_HEADS, parameters={"runs": runs}).result_rows
        return {(str(tenant), str(run_id)): (int(seq), str(link)) for tenant, run_id, seq, link in rows}

    def links_for(self, batch: pa.Table, batch_time_ns: int, retain_until: Sequence[int]) -> list[ChainLink]:
        """One link per run in the batch; retain_until holds each row's retention end (unix seconds)."""
        groups: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        identity = zip(
            batch["tenant"].to_pylist(), batch["run_id"].to_pylist(), batch["trace_id"].to_pylist(),
            batch["span_id"].to_pylist(), digests_of_batch(batch), retain_until, strict=True,
        )  # fmt: skip
        for tenant, run_id, trace_id, span_id, digest, until in identity:
            groups.setdefault((tenant, run_id), []).append((span_key(trace_id, span_id), digest, int(until)))
        return self._links(groups, "spans", batch_time_ns, "")

    def tombstone_for(
        self, tenant: str, run_id: str, deleted: Sequence[tuple[str, str]], batch_time_ns: int, note: str
    ) -> list[ChainLink]:
        """A link recording that these (span key, digest) pairs are deleted on request, and why."""
        return self._links({(tenant, run_id): [(k, d, 0) for k, d in deleted]}, "tombstone", batch_time_ns, note)

    def _links(
        self, groups: dict[tuple[str, str], list[tuple[str, str, int]]], kind: str, batch_time_ns: int, note: str
    ) -> list[ChainLink]:
        heads = self._heads(sorted(groups))
        links = []
        for (tenant, run_id), entries in sorted(groups.items()):
            entries.sort()
            seq, prev = heads.get((tenant, run_id), (0, GENESIS))
            keys = tuple(k for k, _, _ in entries)
            digests = tuple(d for _, d, _ in entries)
            until = tuple(u for _, _, u in entries)
            link = chain_link(prev, batch_time_ns, keys, digests, until)
            links.append(
                ChainLink(tenant, run_id, seq + 1, kind, batch_time_ns, keys, digests, until, prev, link, note)
            )
        return links

    def append(self, links: Iterable[ChainLink], deduplication_token: str) -> None:
        links = list(links)
        if not links:
            return
        rows = [[lk.tenant, lk.run_id, lk.seq, lk.kind, lk.batch_time_ns, list(lk.span_keys), list(lk.span_digests),
                 list(lk.span_retain_until), lk.note, lk.prev_link, lk.link,
                 self._signer.sign(lk.link) if self._signer else ""] for lk in links]  # fmt: skip
        settings = {"insert_deduplication_token": deduplication_token} if deduplication_token else None
        self._client.insert(
            CHAIN_TABLE,
            rows,
            column_names=["tenant", "run_id", "seq", "kind", "batch_time_ns", "span_keys", "span_digests",
                          "span_retain_until", "note", "prev_link", "link", "signature"],
            settings=settings,
        )  # fmt: skip
