"""Collector CPU per span, stage by stage, in one process: the ingest path of `agentledger up` without HTTP.

    .venv/bin/python benchmarks/ingest_stages.py --spans 20000 --repeats 3
    .venv/bin/python benchmarks/ingest_stages.py --smoke        # seconds, as the tests

Stages, on the same agent spans as benchmarks/ingest.py: parse (protobuf), decode (receivers/otlp_decode.py),
each default processor (normalize, redaction), spool encode + decode (Arrow IPC), and export to embedded chDB
(digests, audit-chain screening, insert, chain links); the digests are also timed on their own (they are
part of export). CPU is process CPU time, so chDB's own threads count, as they do in the collector.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_spans import request_bodies

from agentledger.collector.components import PROCESSORS, ComponentContext, component_type
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.collector.spool import decode_batch, encode_batch
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.audit_chain import digests_of_batch
from agentledger.ingest.clickhouse import chdb_dsn, connect
from agentledger.ingest.migrations import migrate
from agentledger.schema.span_columns import with_added_columns

T = TypeVar("T")


class Stages:
    """CPU and wall seconds per stage name, summed over calls."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    def timed(self, name: str, work: Callable[..., T], *args: Any) -> T:
        began = time.process_time()
        result = work(*args)
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - began
        return result


def run_once(bodies: list[tuple[int, bytes]], export_spans: int, database: str, dsn: str) -> tuple[Stages, int]:
    client = connect(dsn, database)
    migrate(client)
    config = CollectorConfig()
    telemetry = CollectorTelemetry()
    processors = [
        (component_id, PROCESSORS[component_type(component_id)].create(
            config.processors[component_id], ComponentContext(component_id, client, telemetry)))
        for component_id in config.pipeline.processors
    ]  # fmt: skip
    exporter = ClickHouseExporter(client, telemetry=telemetry)
    identity = Identity(tenant="default")
    stages = Stages()

    def flush(batch_number: int) -> None:
        batch = stages.timed("spool decode", lambda: pa.concat_tables([decode_batch(p) for p in payloads]))
        stages.timed("  digests (part of export)", lambda: digests_of_batch(with_added_columns(batch)))
        stages.timed("export", lambda: exporter.export(batch, f"bench:{batch_number}"))
        payloads.clear()

    payloads: list[bytes] = []
    spooled = 0
    for number, (_, body) in enumerate(bodies):
        request = stages.timed("parse", ExportTraceServiceRequest.FromString, body)
        # As the OTLP/HTTP receiver does: the binary size of the request spares re-measuring it.
        batch = stages.timed("decode", decode_request, request, identity, None, len(body)).batch
        for component_id, processor in processors:
            batch = stages.timed(component_id, processor.process, batch)
        payloads.append(stages.timed("spool encode", encode_batch, batch))
        spooled += batch.num_rows
        if spooled >= export_spans:
            flush(number)
            spooled = 0
    if payloads:
        flush(len(bodies))
    exporter.shutdown()
    # What the export stage did, read back: the spans stored, and the spans the audit chain links.
    stored = int(client.query("SELECT count() FROM spans").result_rows[0][0])
    chained = int(client.query("SELECT sum(length(span_keys)) FROM audit_chain").result_rows[0][0])
    client.close()
    return stages, min(stored, chained)


def workload(description: str) -> tuple[argparse.Namespace, list[tuple[int, bytes]], int]:
    """The command line and the OTLP requests it asks for, shared with benchmarks/ingest_native.py so both
    measure the same workload: (arguments, (span count, request body) per request, spans in all)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spans-per-request", type=int, default=1000)
    parser.add_argument("--batch-max-spans", type=int, default=20_000, help="spans per export (as the worker)")
    parser.add_argument("--smoke", action="store_true", help="1,000 spans, one repeat: checks it still runs")
    args = parser.parse_args()
    if args.smoke:
        args.spans, args.repeats, args.spans_per_request, args.batch_max_spans = 1000, 1, 250, 500
    bodies = list(request_bodies(args.spans, args.spans_per_request))
    spans = sum(count for count, _ in bodies)
    print(f"workload: {spans} spans in {len(bodies)} requests, {sum(len(b) for _, b in bodies) / 1e6:.0f} MB protobuf,"
          f" exported {args.batch_max_spans} at a time")  # fmt: skip
    return args, bodies, spans


def main() -> None:
    args, bodies, spans = workload(__doc__ or "")
    with tempfile.TemporaryDirectory(prefix="agentledger-stages-") as folder:
        dsn = chdb_dsn(Path(folder))
        runs = []
        for repeat in range(args.repeats):
            stages, stored = run_once(bodies, args.batch_max_spans, f"stages_{repeat}", dsn)
            if stored != spans:
                raise SystemExit(f"only {stored} of {spans} spans were stored and chained")
            runs.append(stages.cpu)
    names = list(runs[0])
    median = {name: statistics.median(run[name] for run in runs) for name in names}
    total = sum(seconds for name, seconds in median.items() if not name.startswith(" "))
    print(f"{'stage':28} {'CPU s/100k':>10} {'spans/s/core':>13} {'share':>6}")
    for name in names:
        per_100k = median[name] / spans * 100_000
        rate = spans / median[name] if median[name] else float("inf")
        print(f"{name:28} {per_100k:10.2f} {rate:13,.0f} {100 * median[name] / total:5.1f}%")
    print(f"{'total':28} {total / spans * 100_000:10.2f} {spans / total:13,.0f}")
    print(f"stored and chained: {spans} spans in each of {args.repeats} run(s)")
    print(f"per collector core, these stages (spans / CPU second): {spans / total:.0f} spans/s")


if __name__ == "__main__":
    main()
