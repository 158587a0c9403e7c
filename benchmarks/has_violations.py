"""Benchmark of the runs listing filtered on audit findings, `GET /v1/runs?has_violations=true`, on embedded
chDB, against the per-run audit it replaced (three reads per candidate run) in the same process.

Loads the query benchmark's synthetic runs (32 spans over 2 traces each, benchmarks/query.py); one run in
`--violating-every` has a write no system confirms (an `unconfirmed_write_call` finding), the others are
clean, so a page of violating runs means auditing many clean candidates, as in a real fleet. Times the
endpoint in process (FastAPI TestClient, so request handling and JSON are included) at each size.
Prints p50/p95 in milliseconds.

    .venv/bin/python benchmarks/has_violations.py [--sizes 1000000,10000000] [--requests 30] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the span-batch builder lives with the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the query benchmark's synthetic runs

import query as runs_data
from harness import embedded_chdb

from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.findings import load_audit
from agentledger.query_api.read_pool import InlineReads
from agentledger.query_api.routers.runs import MAX_AUDITED_PER_PAGE
from agentledger.query_api.writes import NewWrite, insert_writes

TENANT = runs_data.TENANT
SECOND = runs_data.SECOND


def load(writer: SpanWriter, client: object, first_run: int, last_run: int, violating_every: int) -> float:
    """Spans through the span writer; the systems confirm both writes of every run but every Nth run's second."""
    template = runs_data._template_table()
    started = time.perf_counter()
    for start in range(first_run, last_run, 3000):
        count = min(3000, last_run - start)
        writer.insert(runs_data._batch(template, start, count))
        writes = [
            NewWrite(runs_data.run_id(i), "stripe", runs_data.write_ref(i, which), "transfer",
                     f"crm:customer/C-{i % 5000:05d}", runs_data.T0 + (i * 7 + 62 + 3 * which) * SECOND, "bench",
                     tool_call_id=f"call_w{which}")
            for i in range(start, start + count)
            for which in (0, 1)
            if which == 0 or i % violating_every != 0
        ]  # fmt: skip
        insert_writes(client, TENANT, writes)  # type: ignore[arg-type]
    return time.perf_counter() - started


def measure(api: TestClient, client: object, runs: int, requests: int, warmup: int, violating_every: int) -> None:
    examined = min(MAX_AUDITED_PER_PAGE, runs)
    # Runs run_00000000, every Nth after it, are the violating ones; the newest come first in the listing.
    newest = list(range(runs - 1, runs - 1 - examined, -1))
    expected = [runs_data.run_id(i) for i in newest if i % violating_every == 0][:50]

    def filtered(_: int) -> None:
        body = api.get("/v1/runs", params={"has_violations": "true", "limit": 50}).json()
        assert [run["run_id"] for run in body["runs"]] == expected, body
        assert all(run["finding_rules"] == ["unconfirmed_write_call"] for run in body["runs"]), body

    def per_run(_: int) -> None:
        # The shape the listing had before: one audit per candidate run of the page (now five reads each).
        found = [
            runs_data.run_id(i)
            for i in newest
            if (audited := load_audit(InlineReads(client), TENANT, runs_data.run_id(i))) is not None  # type: ignore[arg-type]
            and audited[2].findings
        ]
        assert found[:50] == expected, found

    stored = client.command("SELECT count() FROM spans WHERE tenant = {t:String}", parameters={"t": TENANT})  # type: ignore[attr-defined]
    print(f"\n== {int(stored):,} spans stored ({runs:,} runs, 1 in {violating_every} violating), warm")
    print(f"each request audits the newest {examined} runs and lists {len(expected)}")
    new = runs_data.timed(requests, filtered, warmup)
    old = runs_data.timed(max(1, requests // 10), per_run, 0)
    print(f"{'GET /v1/runs?has_violations=true':<38} {runs_data.percentiles(new)}")
    print(f"{'  one audit per run (5 reads each)':<38} {runs_data.percentiles(old)}")
    print(f"set-based vs per-run (p50): {sorted(old)[len(old) // 2] / sorted(new)[len(new) // 2]:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="span counts to measure at, ascending")
    parser.add_argument("--violating-every", type=int, default=50, help="one run in this many has a finding")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests before each measurement")
    parser.add_argument("--smoke", action="store_true", help="3,200 then 6,400 spans, 3 requests: checks it runs")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.smoke:
        sizes, args.requests, args.warmup, args.violating_every = [3_200, 6_400], 3, 1, 10
    with embedded_chdb("bench") as client:
        writer = SpanWriter(client)
        api = TestClient(create_app(client, QueryApiConfig(tenant=TENANT)))
        loaded = 0
        for size in sizes:
            runs = size // runs_data.SPANS_PER_RUN
            seconds = load(writer, client, loaded, runs, args.violating_every)
            print(f"loaded {(runs - loaded) * runs_data.SPANS_PER_RUN:,} spans in {seconds:.1f} s")
            print(f"merges settled after {runs_data.settle(client, 'bench'):.1f} s")
            loaded = runs
            measure(api, client, runs, args.requests, args.warmup, args.violating_every)


if __name__ == "__main__":
    main()
