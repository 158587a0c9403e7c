"""Span batches made the way the receiver makes them: real OTel SDK spans, encoded as OTLP and decoded by
the receiver's decoder, with chosen names, start times and tenant; Arrow batches built straight from
SPAN_SCHEMA's column defaults (for processors and benchmarks); and exporters that fail on purpose."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.component import ExportError, SpanBatch
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.schema import conventions as conv
from agentledger.schema.span_columns import SPAN_SCHEMA, column_default

DAY_NS = 86_400 * 10**9
# 2025-01-01T00:00:00Z
EPOCH_2025_NS = 1_735_689_600 * 10**9


def span_batch(
    names: Sequence[str], tenant: str = "default", run_id: str = "run_batch", start_times_ns: Sequence[int] = ()
) -> SpanBatch:
    """One span per name, of run `run_id`; start times default to one second apart from 2025-01-01."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for index, name in enumerate(names):
        start = start_times_ns[index] if start_times_ns else EPOCH_2025_NS + index * 10**9
        tracer.start_span(name, start_time=start, attributes={conv.AGENT_RUN_ID: run_id}).end(end_time=start + 1000)
    return decode_request(encode_spans(list(exporter.get_finished_spans())), Identity(tenant)).batch


def _check_columns(names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(SPAN_SCHEMA.names))
    if unknown:
        raise KeyError(f"not columns of SPAN_SCHEMA: {', '.join(unknown)}")


def span_row(**values: Any) -> dict[str, Any]:
    """One span as a row of every SPAN_SCHEMA column: the given values, every other column its default."""
    _check_columns(values)
    return {field.name: values[field.name] if field.name in values else column_default(field) for field in SPAN_SCHEMA}


def span_rows_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """A SPAN_SCHEMA batch of the given rows (column -> value), unset columns at their defaults."""
    return pa.Table.from_pylist([span_row(**row) for row in rows], schema=SPAN_SCHEMA)


def span_columns_table(spans: int, **columns: Sequence[Any]) -> pa.Table:
    """A SPAN_SCHEMA batch of `spans` spans: the given columns hold the given values (one per span), every
    other column its default. Columnar, so benchmarks can build large batches quickly."""
    _check_columns(columns)
    for name, values in columns.items():
        if len(values) != spans:
            raise ValueError(f"column {name!r} has {len(values)} values for {spans} spans")
    arrays = [
        pa.array(columns[field.name], field.type)
        if field.name in columns
        else pa.array([column_default(field)] * spans, field.type)
        for field in SPAN_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)


class FailingExporter:
    """Raises the given error on every export and counts the attempts and the spans it was offered."""

    def __init__(self, error: ExportError) -> None:
        self.error = error
        self.attempts = 0

    def export(self, batch: SpanBatch, batch_id: str) -> None:
        self.attempts += 1
        raise self.error

    def shutdown(self) -> None:
        pass
