"""Audit chain v2 formats: the v2 span digest computed in ClickHouse SQL equals Python's, the example
vectors in schema/AUDIT_CHAIN.md recompute (so the document cannot drift), digest field lists are frozen,
and the RFC 9162 Merkle tree, its compact range and inclusion proofs agree with the definition."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.audit_chain import (
    CURRENT_DIGEST_VERSION,
    DIGEST_FIELDS_V1,
    DIGEST_FIELDS_V2,
    DIGEST_FIELDS_V2_KINDS,
    DIGEST_FIELDS_V3,
    DIGEST_FIELDS_V3_KINDS,
    DIGEST_V2,
    DIGEST_V3,
    ChainLink,
    digest_sql,
    digests_of_batch,
    link_v2_bytes,
    rows_of_batch,
    span_digest_v1,
    span_digest_v2,
    span_digest_v3,
)
from agentledger.ingest.checkpoints import Checkpoint
from agentledger.ingest.merkle import (
    EMPTY_ROOT,
    CompactRange,
    inclusion_path,
    leaf_hash,
    merkle_root,
    node_hash,
    root_text,
    verify_inclusion,
)
from agentledger.ingest.span_writer import SpanWriter
from agentledger.schema.span_columns import SPAN_SCHEMA

DOCUMENT = Path(__file__).resolve().parents[2] / "schema" / "AUDIT_CHAIN.md"


def _batch() -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t", "1.2")
    attributes = {"b": "2", "a": 'ünïcode\n"q"', "n": 5, "agent.run.id": "r"}
    with tracer.start_as_current_span("outer", attributes=attributes) as span:
        span.add_event("e1", {"z": "1", "y": "2"})
        span.add_event("e2")
        tracer.start_span("inner", attributes={"agent.run.id": "r", "list": ["x", "y"], "empty": ""}).end()
    tracer.start_span("", attributes={"agent.run.id": "r", "gen_ai.usage.input_tokens": 7}).end()
    return decode_request(encode_spans(exporter.get_finished_spans()), Identity("t")).batch


@pytest.mark.parametrize("version", [DIGEST_V2, DIGEST_V3])
def test_the_typed_digests_computed_in_clickhouse_sql_equal_python(client: Client, version: int) -> None:
    batch = _batch()
    column = batch.schema.get_field_index("conversation_id")
    batch = batch.set_column(column, batch.schema.field(column), pa.array(["t/s/c1", "", "t/s/ü"], pa.string()))
    SpanWriter(client).insert(batch)

    in_sql = dict(client.query(f"SELECT span_id, {digest_sql(version)} FROM spans").result_rows)

    assert in_sql == dict(zip(batch["span_id"].to_pylist(), digests_of_batch(batch, version), strict=True))
    assert list(in_sql.values()) != [] and len(set(in_sql.values())) == 3


def _vectors() -> dict[str, dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)\n```", DOCUMENT.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {vector["vector"]: vector for vector in map(json.loads, blocks) if "vector" in vector}


def test_the_documents_example_vectors_recompute() -> None:
    vectors = _vectors()

    span = vectors["span-digest-v2"]
    assert span_digest_v2(span["values"]) == span["digest"]
    v3 = vectors["span-digest-v3"]
    assert span_digest_v3(v3["values"]) == v3["digest"]
    # v3 is v2's values plus conversation_id: the same span's v2 digest is the v2 vector's.
    assert {k: v for k, v in v3["values"].items() if k != "conversation_id"} == span["values"]
    assert span_digest_v2(v3["values"]) == span["digest"] != v3["digest"]
    assert span_digest_v1(vectors["span-digest-v1"]["values"]) == vectors["span-digest-v1"]["digest"]
    link_vector = vectors["link-v2"]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in link_vector["link"].items()}
    link = ChainLink(**fields, link="")
    assert link_v2_bytes(link).decode() == link_vector["encoded"]
    assert link.recomputed() == link_vector["hash"]
    merkle = vectors["merkle"]
    leaves = [leaf_hash(text) for text in merkle["links"]]
    assert [root_text(leaf) for leaf in leaves] == merkle["leaf_hashes"]
    assert root_text(merkle_root(leaves)) == merkle["root"]
    assert [root_text(node) for node in inclusion_path(2, leaves)] == merkle["inclusion_of_index_2"]
    checkpoint = Checkpoint(**{**vectors["checkpoint"]["checkpoint"]})
    assert checkpoint.body().decode() == vectors["checkpoint"]["encoded"]
    assert checkpoint.hash() == vectors["checkpoint"]["hash"]
    assert set(vectors) == {"span-digest-v2", "span-digest-v3", "span-digest-v1", "link-v2", "merkle", "checkpoint"}


def test_the_document_lists_the_frozen_v2_and_v3_fields() -> None:
    text = DOCUMENT.read_text(encoding="utf-8").split("## Links v2")[0]
    v2_section, v3_section = text.split("## Span digest v3")
    listed_v2 = re.findall(r"`(\w+)` \((\w+)\)", v2_section)
    added_in_v3 = re.findall(r"`(\w+)` \((\w+)\)", v3_section)

    assert tuple(listed_v2) == DIGEST_FIELDS_V2_KINDS
    assert (*listed_v2, *added_in_v3) == DIGEST_FIELDS_V3_KINDS


def test_digest_fields_are_frozen_and_the_current_version_covers_every_stored_column() -> None:
    batch = _batch()
    row = rows_of_batch(batch)[0]
    with_new_column = {**row, "a_column_added_later": "x"}

    assert len(DIGEST_FIELDS_V1) == 55 and DIGEST_FIELDS_V1[:4] == ("tenant", "run_id", "trace_id", "span_id")
    assert DIGEST_FIELDS_V2 == DIGEST_FIELDS_V1
    assert (*DIGEST_FIELDS_V2, "conversation_id") == DIGEST_FIELDS_V3
    assert (*DIGEST_FIELDS_V2_KINDS, ("conversation_id", "text")) == DIGEST_FIELDS_V3_KINDS
    assert CURRENT_DIGEST_VERSION == DIGEST_V3
    # A migration adding a column must add a digest version: this fails until it does.
    assert set(SPAN_SCHEMA.names) == set(DIGEST_FIELDS_V3)
    assert span_digest_v1(with_new_column) == span_digest_v1(row)
    assert span_digest_v2(with_new_column) == span_digest_v2(row)
    assert span_digest_v3(with_new_column) == span_digest_v3(row)
    # The v2 digest of an existing row is unchanged by v3 and by the new column's value.
    assert span_digest_v2({**row, "conversation_id": "t/s/other"}) == span_digest_v2(row)
    documented = _vectors()["span-digest-v2"]  # a fixed existing row: its v2 digest, as published
    assert span_digest_v2({**documented["values"], "conversation_id": "t/s/c"}) == documented["digest"]
    assert digests_of_batch(batch, DIGEST_V2) == [span_digest_v2(r) for r in rows_of_batch(batch)]
    assert span_digest_v3({**row, "conversation_id": "t/s/other"}) != span_digest_v3(row)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, literally."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


@pytest.mark.parametrize("size", range(0, 18))
def test_compact_range_roots_and_inclusion_proofs_follow_rfc_9162(size: int) -> None:
    leaves = [leaf_hash("sha256:" + format(i, "064x")) for i in range(size)]
    frontier = CompactRange()
    for leaf in leaves:
        frontier.append(leaf)

    assert frontier.root() == _mth(leaves) == merkle_root(leaves)
    for index in range(size):
        path = inclusion_path(index, leaves)
        assert verify_inclusion(index, size, leaves[index], path, frontier.root())
        assert not verify_inclusion(index, size, leaf_hash("sha256:" + "f" * 64), path, frontier.root())
        if size > 1:
            assert not verify_inclusion((index + 1) % size, size, leaves[index], path, frontier.root())
