"""Export workers' overflow policy on a real spool: over its backlog bound, an exporter whose destination is
down skips its oldest records, counted, while a worker without a bound keeps everything for later."""

from __future__ import annotations

import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.component import SpanBatch
from agentledger.collector.config import ClickHouseExporterConfig, SpoolConfig
from agentledger.collector.export_worker import ExportWorker
from agentledger.collector.exporters.phoenix import PhoenixExporter, PhoenixExporterConfig
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.collector.spool import Spool
from agentledger.collector.telemetry import CollectorTelemetry
from tests.conftest import free_port

SKIPPED = "agentledger_spans_skipped_total"


def span_batch(count: int) -> SpanBatch:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for index in range(count):
        with provider.get_tracer("tests").start_as_current_span(f"span {index}"):
            pass
    return decode_request(encode_spans(list(exporter.get_finished_spans())), Identity("default")).batch


def test_overflow_skip_oldest_skips_and_counts_while_an_unbounded_worker_keeps_its_backlog(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", SpoolConfig(fsync="never"))
    telemetry = CollectorTelemetry()
    # Phoenix down (nothing listens on the port) and a backlog bound below one record.
    down = PhoenixExporterConfig(
        endpoint=f"http://127.0.0.1:{free_port()}", max_backlog_bytes=1, retry={"initial_interval_s": 0.05}
    )
    worker = ExportWorker.for_config("phoenix", PhoenixExporter(down), spool, telemetry, down)
    unbounded = spool.cursor("clickhouse")  # a consumer that has exported nothing yet
    spool.append(span_batch(5))
    spool.append(span_batch(3))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and telemetry.value(SKIPPED, ("exporter", "phoenix")) < 8:
        time.sleep(0.05)
    worker.stop(0)

    assert telemetry.value(SKIPPED, ("exporter", "phoenix")) == 8
    assert telemetry.value("agentledger_spans_exported_total", ("exporter", "phoenix")) == 0
    assert spool.bytes_after(spool.cursor("phoenix").committed) == 0
    assert spool.bytes_after(unbounded.committed) == int(spool.total_bytes())
    assert 'agentledger_spans_skipped_total{exporter="phoenix"} 8' in telemetry.render_prometheus()
    spool.close()


def test_clickhouse_never_skips_by_default_and_phoenix_does() -> None:
    assert (ClickHouseExporterConfig().overflow, ClickHouseExporterConfig().max_backlog_bytes) == ("block", None)
    assert (PhoenixExporterConfig().overflow, PhoenixExporterConfig().max_backlog_bytes) == (
        "skip_oldest", 256 * 1024 * 1024,
    )  # fmt: skip
