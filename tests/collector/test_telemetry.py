"""The collector's /metrics text: the export-latency histogram's cumulative buckets, and the memory gauges
(resident set, Arrow's pool, ClickHouse's tracked memory) a pipeline registers."""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from agentledger.collector.config import SpoolConfig
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.telemetry import CollectorTelemetry


def test_export_latency_is_a_histogram_with_cumulative_buckets_sum_and_count() -> None:
    telemetry = CollectorTelemetry()
    for seconds in (0.003, 0.3, 0.5, 7.0, 100.0):
        telemetry.observe("agentledger_export_seconds", seconds, ("exporter", "clickhouse"))
    telemetry.observe("agentledger_export_seconds", 0.02, ("exporter", "phoenix"))

    lines = [line for line in telemetry.render_prometheus().splitlines() if "agentledger_export_seconds" in line]

    bucket = 'agentledger_export_seconds_bucket{exporter="clickhouse",le="%s"} %d'
    assert lines[:2] == ["# HELP agentledger_export_seconds Time to deliver one batch, by exporter.",
                         "# TYPE agentledger_export_seconds histogram"]  # fmt: skip
    # A value equal to a bound falls in that bucket (le: less than or equal).
    assert lines[2:18] == [
        bucket % ("0.005", 1), bucket % ("0.01", 1), bucket % ("0.025", 1), bucket % ("0.05", 1),
        bucket % ("0.1", 1), bucket % ("0.25", 1), bucket % ("0.5", 3), bucket % ("1", 3), bucket % ("2.5", 3),
        bucket % ("5", 3), bucket % ("10", 4), bucket % ("30", 4), bucket % ("60", 4), bucket % ("+Inf", 5),
        'agentledger_export_seconds_sum{exporter="clickhouse"} 107.803',
        'agentledger_export_seconds_count{exporter="clickhouse"} 5',
    ]  # fmt: skip
    assert 'agentledger_export_seconds_bucket{exporter="phoenix",le="0.01"} 0' in lines
    assert 'agentledger_export_seconds_bucket{exporter="phoenix",le="0.025"} 1' in lines
    assert 'agentledger_export_seconds_count{exporter="phoenix"} 1' in lines


def test_an_unlabelled_histogram_renders_only_the_bucket_label() -> None:
    telemetry = CollectorTelemetry()
    telemetry.observe("agentledger_export_seconds", 2.0)

    text = telemetry.render_prometheus()

    assert 'agentledger_export_seconds_bucket{le="1"} 0\nagentledger_export_seconds_bucket{le="2.5"} 1\n' in text
    assert "agentledger_export_seconds_sum 2\nagentledger_export_seconds_count 1\n" in text


def test_a_pipeline_serves_the_process_memory_gauges(client: Client, tmp_path: Path) -> None:
    telemetry = CollectorTelemetry()
    pipeline = build_pipeline(CollectorConfig(spool=SpoolConfig(directory=tmp_path / "spool")), client, telemetry, None)
    assert pipeline.spool is not None
    try:
        text = telemetry.render_prometheus()
    finally:
        pipeline.spool.close()  # never started: no export worker to stop

    values = {}
    for name in ("agentledger_process_resident_bytes", "agentledger_arrow_allocated_bytes",
                 "agentledger_clickhouse_tracked_memory_bytes"):  # fmt: skip
        assert f"# TYPE {name} gauge" in text
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match is not None, text
        values[name] = float(match[1])
    # This test process runs chDB, so its resident set holds at least ClickHouse's tracked memory.
    assert values["agentledger_clickhouse_tracked_memory_bytes"] > 0
    assert values["agentledger_process_resident_bytes"] > values["agentledger_clickhouse_tracked_memory_bytes"]
    assert values["agentledger_arrow_allocated_bytes"] >= 0
