"""Acknowledged spans are never lost: a storage outage fills the spool (then 429), a SIGKILL mid-stream
loses nothing, and replays store every span exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from agentledger.collector.config import ClickHouseExporterConfig, HttpProtocolConfig, RetryConfig, SpoolConfig
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from tests.conftest import otlp_ingest, otlp_request_body, start_service

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _wait(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_storage_outage_spool_grows_then_429_then_everything_arrives_once(client: Client, tmp_path: Path) -> None:
    config = CollectorConfig(
        exporters={
            "clickhouse": ClickHouseExporterConfig(retry=RetryConfig(initial_interval_s=0.05, max_interval_s=0.2))
        },
        spool=SpoolConfig(max_bytes=1024 * 1024, segment_bytes=64 * 1024),
    )
    telemetry = CollectorTelemetry()
    pipeline = build_pipeline(config, client, telemetry, tmp_path / "spool")
    pipeline.start()
    http = TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline, telemetry)))
    try:
        client.command("RENAME TABLE spans TO spans_offline")  # ClickHouse cannot take inserts now
        statuses = []
        for _ in range(200):
            response = http.post("/v1/traces", content=otlp_request_body("run_outage", 50), headers=PROTOBUF)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["retry-after"] == "5"
                break
        accepted = statuses.count(200)

        assert statuses[-1] == 429
        assert set(statuses[:-1]) == {200}
        assert accepted >= 5
        assert pipeline.spool is not None and pipeline.spool.pending_bytes() > 512 * 1024
        assert telemetry.value("agentledger_export_failures_total", ("exporter", "clickhouse")) >= 1

        client.command("RENAME TABLE spans_offline TO spans")  # ClickHouse is back
        _wait(lambda: pipeline.spool is not None and pipeline.spool.pending_bytes() == 0)
    finally:
        pipeline.shutdown(drain_seconds=5)

    # Every accepted span is stored exactly once, despite the failed and retried inserts.
    assert int(client.command("SELECT count() FROM spans")) == accepted * 50
    assert int(client.command("SELECT sum(span_count) FROM runs WHERE run_id = 'run_outage'")) == accepted * 50
    assert telemetry.value("agentledger_spans_exported_total", ("exporter", "clickhouse")) == accepted * 50


def _count_in_folder(data_dir: Path) -> tuple[int, int, int]:
    """(rows, distinct spans, run index total) read by a separate process: chDB allows one folder per process."""
    script = (
        "import sys\n"
        "from agentledger.ingest.clickhouse import chdb_dsn, connect\n"
        "from pathlib import Path\n"
        "c = connect(chdb_dsn(Path(sys.argv[1]) / 'clickhouse'), 'agentledger')\n"
        "rows = c.command('SELECT count() FROM spans')\n"
        "distinct = c.command('SELECT uniqExact(trace_id, span_id) FROM spans')\n"
        "index = c.command('SELECT sum(span_count) FROM runs')\n"
        "print(rows, distinct, index)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(data_dir)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows, distinct, index = (int(x) for x in result.stdout.split())
    return rows, distinct, index


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_span_and_duplicates_none(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    service = start_service(data_dir)
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=10) as http:
            for index in range(10_000):
                if stop.is_set():
                    return
                run_id = f"run_kill_{index}"
                try:
                    response = http.post(f"{service.collector_url}/v1/traces", content=otlp_request_body(run_id, 40),
                                         headers=PROTOBUF)  # fmt: skip
                except httpx.HTTPError:
                    return  # the collector died mid-request: that request was never acknowledged
                if response.status_code == 200:
                    acknowledged.append(run_id)

    sender = threading.Thread(target=send)
    sender.start()
    _wait(lambda: len(acknowledged) >= 60)
    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait()
    stop.set()
    sender.join()

    restarted = start_service(data_dir)
    try:
        for run_id in acknowledged[-3:]:
            _wait(lambda run_id=run_id: httpx.get(f"{restarted.api_url}/v1/runs/{run_id}/timeline").status_code == 200)
        _wait(lambda: not any((data_dir / "spool" / "cursors").glob("*.tmp")))
    finally:
        assert restarted.stop() == 0  # drains the spool

    rows, distinct, index = _count_in_folder(data_dir)
    assert distinct >= len(acknowledged) * 40  # nothing acknowledged is missing
    assert rows == distinct  # and nothing is stored twice
    # The run index sums what was inserted, merges or not: equal to the distinct spans only if no insert
    # was repeated, i.e. replays after the kill were deduplicated.
    assert index == distinct


class _DeadExporter:
    def __init__(self) -> None:
        self.attempts = 0

    def export(self, batch: object, batch_id: str) -> None:
        from agentledger.collector.component import ExportError

        self.attempts += 1
        raise ExportError("destination is down")

    def shutdown(self) -> None:
        pass


def test_a_dead_exporter_stalls_nothing_and_keeps_its_backlog(client: Client, tmp_path: Path) -> None:
    from agentledger.collector.export_worker import ExportWorker
    from agentledger.collector.exporters.clickhouse import ClickHouseExporter
    from agentledger.collector.pipeline import Pipeline
    from agentledger.collector.spool import Spool

    telemetry = CollectorTelemetry()
    spool = Spool(tmp_path / "spool", SpoolConfig())
    dead = _DeadExporter()
    fast_retry = RetryConfig(initial_interval_s=0.01, max_interval_s=0.05)
    exporters = [("clickhouse", ClickHouseExporter(client)), ("archive", dead)]
    workers = [ExportWorker(name, exporter, spool, telemetry, fast_retry, 1000) for name, exporter in exporters]
    pipeline = Pipeline([], exporters, spool, workers)  # type: ignore[arg-type]
    pipeline.start()
    http = TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline, telemetry)))
    try:
        for index in range(5):
            assert (
                http.post("/v1/traces", content=otlp_request_body(f"run_fan_{index}", 20), headers=PROTOBUF).status_code
                == 200
            )
        _wait(lambda: int(client.command("SELECT count() FROM spans")) == 100)
        _wait(lambda: dead.attempts >= 3)
    finally:
        pipeline.shutdown(drain_seconds=0.2)

    assert spool.cursor("clickhouse").committed == spool.end()
    assert spool.cursor("archive").committed < spool.end()  # its backlog waits for it, on disk
    assert telemetry.value("agentledger_export_failures_total", ("exporter", "archive")) >= 3


@pytest.mark.parametrize(
    ("damaged_request", "byte", "where"),
    [(4, 13, "length field of the last record of an older segment"), (1, 13, "length field of a middle record"),
     (7, 100, "payload byte in the newest segment"), (9, 100, "last record of the newest segment, whole")],
)  # fmt: skip
def test_a_damaged_record_loses_only_its_own_spans_end_to_end(
    client: Client, tmp_path: Path, damaged_request: int, byte: int, where: str
) -> None:
    """Ten acknowledged requests of ten spans in two segments, written while storage is down; one record
    is damaged on disk before the restart. Exactly that request's ten spans are lost, and counted."""
    config = CollectorConfig(spool=SpoolConfig(directory=tmp_path / "spool"))
    records: list[tuple[Path, int, int]] = []
    for first in (0, 5):  # storage down: no export workers started; each start opens a new segment
        pipeline = build_pipeline(config, client, CollectorTelemetry(), None)
        assert pipeline.spool is not None
        http = TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline)))
        for index in range(first, first + 5):
            start = pipeline.spool.end()
            response = http.post("/v1/traces", content=otlp_request_body(f"run_{index}", 10), headers=PROTOBUF)
            assert response.status_code == 200
            end = pipeline.spool.end()
            records.append((tmp_path / "spool" / "segments" / f"{end.segment:012d}.seg", start.offset, end.offset))
        pipeline.spool.close()
    segment, start, end = records[damaged_request]
    data = bytearray(segment.read_bytes())
    data[start + byte] ^= 0xFF
    segment.write_bytes(bytes(data))

    telemetry = CollectorTelemetry()
    pipeline = build_pipeline(config, client, telemetry, None)
    pipeline.start()
    try:
        _wait(lambda: pipeline.spool is not None and pipeline.spool.pending_bytes() == 0)
    finally:
        pipeline.shutdown(drain_seconds=5)

    stored = dict(client.query("SELECT run_id, count() FROM spans GROUP BY run_id").result_rows)
    assert stored == {f"run_{index}": 10 for index in range(10) if index != damaged_request}, where
    assert telemetry.value("agentledger_spool_quarantined_records_total") == 1
    assert telemetry.value("agentledger_spool_quarantined_bytes_total") == end - start
    quarantined = {p.name: p.read_bytes() for p in (tmp_path / "spool" / "quarantine").iterdir()}
    assert quarantined == {f"{segment.stem}.{start:012d}.damaged": bytes(data[start:end])}
    assert "agentledger_spool_quarantined_records_total 1" in telemetry.render_prometheus()
