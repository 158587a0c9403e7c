"""Span batches made the way the receiver makes them: real OTel SDK spans, encoded as OTLP and decoded by
the receiver's decoder, with chosen names, start times and tenant; and exporters that fail on purpose."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.component import ExportError, SpanBatch
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.schema import conventions as conv

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
