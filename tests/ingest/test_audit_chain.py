"""The two ways span digests are computed agree, and canonical JSON is RFC 8785 for our value types."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.audit_chain import DIGEST_V1, DIGEST_V2, digests_of_batch, rows_of_batch, span_digest
from agentledger.schema.canonical import compact_json
from tests.collector.span_batches import span_rows_table

_VALUES = st.recursive(
    st.text(alphabet=st.characters(exclude_categories=["Cs"])) | st.integers(-(2**70), 2**70) | st.booleans(),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(_VALUES)
def test_canonical_json_is_compact_unescaped_json(value: object) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    assert compact_json(value) == expected


def test_column_wise_digests_equal_row_digests_in_every_version() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outer", attributes={"b": "2", "a": 'ünïcode\n"q"', "n": 5}) as span:
        span.add_event("e1", {"z": "1", "y": "2"})
        span.add_event("e2")
        tracer.start_span("inner", attributes={"agent.run.id": "r", "list": ["x", "y"]}).end()
    batch = decode_request(encode_spans(exporter.get_finished_spans()), Identity("t")).batch

    for version in (DIGEST_V1, DIGEST_V2):
        assert digests_of_batch(batch, version) == [span_digest(row, version) for row in rows_of_batch(batch)]
        assert len(set(digests_of_batch(batch, version))) == 2


_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6)
_MAP = st.dictionaries(_TEXT, _TEXT, max_size=4)
_ROW = st.fixed_dictionaries(
    {
        "name": _TEXT,
        "input_value": _TEXT,
        "duration_ns": st.integers(0, 2**64 - 1),
        "input_tokens": st.integers(-(2**63), 2**63 - 1),
        "identity_mismatch": st.booleans(),
        "truncated": st.lists(_TEXT, max_size=3),
        "attributes": _MAP,
        "resource_attributes": _MAP,
        "event_times": st.lists(st.integers(0, 2**62), max_size=2),
        "event_names": st.lists(_TEXT, max_size=2),
        "event_attributes": st.lists(_MAP, max_size=2),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=6), st.integers(0, 5), st.lists(st.booleans(), min_size=6, max_size=6))
def test_the_vectorised_v2_digests_equal_row_digests_on_any_batch_slice_or_filter(
    rows: list[dict[str, object]], start: int, keep: list[bool]
) -> None:
    # The hot path encodes columns with Arrow kernels (maps sorted at once across rows); a sliced or filtered
    # batch has list offsets that do not start at 0, which those kernels must respect.
    for index, row in enumerate(rows):
        row["span_id"] = f"{index:016x}"
        row["event_times"] = [1767225600000000000 + t for t in row["event_times"]]  # type: ignore[attr-defined]
    batch = span_rows_table(rows)
    for candidate in (batch, batch.slice(min(start, batch.num_rows - 1)), batch.filter(pa.array(keep[: len(rows)]))):
        expected = [span_digest(row, DIGEST_V2) for row in rows_of_batch(candidate)]
        assert digests_of_batch(candidate, DIGEST_V2) == expected
