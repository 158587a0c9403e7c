"""A real collector (OTLP/HTTP on uvicorn, the pipeline on embedded chDB) whose spool lives on a small tmpfs:
the disk-full tests run it in a private mount namespace and drive it from stdin.

Usage: python spool_disk_full_app.py DATA_DIR SPOOL_DIR PORT [--outage]
  At start: storage renamed away by an earlier run comes back; --outage takes it away (inserts fail).
  stdin `restore`: storage comes back; `finish`: waits until the spool is drained, stops, and prints the
  stored span count of every run as JSON (and the spool's quarantine counts).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import uvicorn

from agentledger.collector.auth import Authenticator
from agentledger.collector.config import ClickHouseExporterConfig, HttpProtocolConfig, RetryConfig, SpoolConfig
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.receivers.otlp_ingest import OtlpIngest
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.clickhouse import chdb_dsn, connect
from agentledger.ingest.migrations import migrate


def main() -> None:
    data_dir, spool_dir, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    client = connect(chdb_dsn(data_dir / "clickhouse"), "agentledger")
    if int(client.command("EXISTS TABLE spans_offline")):
        client.command("RENAME TABLE spans_offline TO spans")
    migrate(client)
    if "--outage" in sys.argv:
        client.command("RENAME TABLE spans TO spans_offline")
    config = CollectorConfig(
        exporters={
            "clickhouse": ClickHouseExporterConfig(retry=RetryConfig(initial_interval_s=0.05, max_interval_s=0.2))
        },
        spool=SpoolConfig(directory=spool_dir, segment_bytes=128 * 1024),
    )
    telemetry = CollectorTelemetry()
    pipeline = build_pipeline(config, client, telemetry, None)
    pipeline.start()
    receiver = config.receiver
    ingest = OtlpIngest(receiver, pipeline, telemetry, Authenticator(receiver.auth, receiver.tenant))
    server = uvicorn.Server(
        uvicorn.Config(
            create_otlp_http_app(HttpProtocolConfig(), ingest), host="127.0.0.1", port=port, log_level="warning",
            lifespan="off", access_log=False,
        )
    )  # fmt: skip
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "restore":
            client.command("RENAME TABLE spans_offline TO spans")
            print(json.dumps({"restored": True}), flush=True)
        elif command == "finish":
            break
    assert pipeline.spool is not None
    deadline = time.monotonic() + 120  # a spool that never drains still ends with a report the test fails on
    while pipeline.spool.pending_bytes() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.should_exit = True
    serving.join()
    pipeline.shutdown(drain_seconds=5)
    stored = {
        str(run_id): int(count)
        for run_id, count in client.query("SELECT run_id, count() FROM spans GROUP BY run_id").result_rows
    }
    rows = int(client.command("SELECT count() FROM spans"))
    distinct = int(client.command("SELECT uniqExact(trace_id, span_id) FROM spans"))
    print(
        json.dumps(
            {
                "stored": stored,
                "rows": rows,
                "distinct": distinct,
                "quarantined": pipeline.spool.quarantined_records,
                "torn_tails": pipeline.spool.torn_tails,
                "quarantine_files": sorted(p.name for p in (spool_dir / "quarantine").iterdir()),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
