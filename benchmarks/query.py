"""Read-path benchmark of the query API on embedded chDB: timeline, reverse write lookup, runs listing.

Loads synthetic agent runs (32 spans over 2 traces each, with a downstream write per run) through the
ingest span writer as Arrow batches, then times the API endpoints in process (FastAPI TestClient, so
request handling and JSON are included) for random runs, at 100k spans and again at 1M spans.
Prints p50/p95 in milliseconds; the query condition cache is off so repeated predicates are not cached.

    .venv/bin/python benchmarks/query.py [--runs 30000] [--requests 300] [--smoke]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the span-batch builder lives with the tests

from agentledger.ingest.clickhouse import chdb_dsn, connect
from agentledger.ingest.migrations import migrate
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.writes import NewWrite, insert_writes
from agentledger.schema.span_columns import SPAN_SCHEMA
from tests.collector.span_batches import span_rows_table

TENANT = "bench"
SECOND = 1_000_000_000
T0 = 1_795_168_800 * SECOND
CONTENT = ("The customer says the blender arrived broken and asks for a refund of the full amount. " * 6)[:500]
TOOLS = ["search_orders", "get_customer", "lookup_policy", "get_order", "list_refunds"]


def _template() -> list[dict[str, object]]:
    """One run's spans: (trace index, offset seconds, columns). Two traces, 32 spans."""
    rows: list[dict[str, object]] = []

    def add(trace: int, offset: float, **columns: object) -> None:
        rows.append({"_trace": trace, "_offset": offset, **columns})

    add(
        0,
        0.0,
        name="invoke_agent refund-agent",
        entry_type="run",
        operation="invoke_agent",
        attributes=[("agentledger.run.autonomy_level", "approve_writes")],
    )
    add(0, 0.1, name="retrieval zendesk", entry_type="retrieval", provenance="user_provided", input_value=CONTENT)
    for step in range(12):
        add(
            0,
            0.2 + step * 0.3,
            name="chat gpt-4.1-mini",
            entry_type="prompt",
            operation="chat",
            model="gpt-4.1-mini",
            input_tokens=1200,
            output_tokens=150,
            input_value=CONTENT,
            output_value=CONTENT[:200],
        )
        if step < 10:
            tool = TOOLS[step % len(TOOLS)]
            add(
                0,
                0.3 + step * 0.3,
                name=f"execute_tool {tool}",
                entry_type="tool_call",
                tool_name=tool,
                tool_access="read",
                tool_call_id=f"call_r{step}",
                tool_arguments='{"id": "A-1"}',
            )
    add(
        0,
        4.0,
        name="policy refunds.max-amount",
        entry_type="policy_decision",
        policy_id="refunds.max-amount",
        policy_decision="review",
    )
    add(1, 60.0, name="invoke_agent refund-agent", entry_type="run", operation="invoke_agent", run_outcome="success")
    for index in range(2):
        add(
            1,
            61.0 + index * 3,
            name="approval issue_refund",
            entry_type="approval",
            approval_decision="approved",
            approver="user:maria.lopez",
            attributes=[("agentledger.approval.tool_call.id", f"call_w{index}")],
        )
        add(
            1,
            62.0 + index * 3,
            name="execute_tool issue_refund",
            entry_type="tool_call",
            tool_name="issue_refund",
            tool_access="write",
            tool_call_id=f"call_w{index}",
            target="@target",
            attributes=[("agentledger.tool.influenced_by", '["user_provided"]')],
        )
        add(
            1,
            62.2 + index * 3,
            name="write stripe",
            entry_type="downstream_write",
            write_system="stripe",
            write_ref=f"@ref{index}",
            target="@target",
            attributes=[("agentledger.write.tool_call.id", f"call_w{index}")],
        )
    return rows  # fmt: skip


TEMPLATE = _template()
SPANS_PER_RUN = len(TEMPLATE)


def _template_table() -> pa.Table:
    common = {"tenant": TENANT, "status_code": "OK", "service_name": "refund-agent",
              "agent_id": "refund-agent-prod-1", "agent_name": "refund-agent"}  # fmt: skip
    return span_rows_table(
        {**common, **{name: value for name, value in row.items() if not name.startswith("_")}} for row in TEMPLATE
    )


def run_id(index: int) -> str:
    return f"run_{index:08d}"


def write_ref(index: int, which: int) -> str:
    return f"stripe:refund/re_{index:08d}_{which}"


def _batch(template: pa.Table, first_run: int, count: int) -> pa.Table:
    """`count` runs as one Arrow table: the template repeated, identity and time columns computed with numpy."""
    repeat = np.tile(np.arange(SPANS_PER_RUN), count)
    table = template.take(pa.array(repeat))
    run_index = np.repeat(np.arange(first_run, first_run + count), SPANS_PER_RUN)
    trace_of = np.array([row["_trace"] for row in TEMPLATE], dtype=np.int64)[repeat]
    offsets_ns = (np.array([row["_offset"] for row in TEMPLATE]) * SECOND).astype(np.int64)[repeat]
    # Runs start 7 s apart, so 31,250 runs cover about 2.5 days (a few daily partitions).
    starts = T0 + run_index.astype(np.int64) * 7 * SECOND + offsets_ns
    run_ids = pa.array([run_id(int(i)) for i in run_index])
    trace_ids = pa.array([f"{int(i):024x}{int(t):08x}" for i, t in zip(run_index, trace_of, strict=True)])
    span_ids = pa.array([f"{int(i):010x}{int(s):06x}" for i, s in zip(run_index, repeat, strict=True)])
    targets = pa.array([f"crm:customer/C-{int(i) % 5000:05d}" for i in run_index])
    refs = [pa.array([write_ref(int(i), which) for i in run_index]) for which in range(2)]
    target_column = pc.if_else(pc.equal(table["target"], "@target"), targets, table["target"])
    ref_column = pc.if_else(
        pc.equal(table["write_ref"], "@ref0"),
        refs[0],
        pc.if_else(pc.equal(table["write_ref"], "@ref1"), refs[1], table["write_ref"]),
    )
    replaced = {
        "run_id": run_ids,
        "trace_id": trace_ids,
        "span_id": span_ids,
        "start_time": pa.array(starts, pa.timestamp("ns")),
        "end_time": pa.array(starts + 50_000_000, pa.timestamp("ns")),
        "duration_ns": pa.array(np.full(len(repeat), 50_000_000, dtype=np.uint64)),
        "target": target_column,
        "write_ref": ref_column,
    }
    for name, column in replaced.items():
        position = table.schema.get_field_index(name)
        table = table.set_column(position, SPAN_SCHEMA.field(name), column)
    return table


def load(client_writer: SpanWriter, client: object, first_run: int, last_run: int) -> float:
    template = _template_table()
    started = time.perf_counter()
    for start in range(first_run, last_run, 3000):
        count = min(3000, last_run - start)
        client_writer.insert(_batch(template, start, count))
        # The systems' own reports of the first write of each run (the second stays unconfirmed).
        insert_writes(
            client,  # type: ignore[arg-type]
            TENANT,
            [
                NewWrite(run_id(i), "stripe", write_ref(i, 0), "transfer", f"crm:customer/C-{i % 5000:05d}",
                         T0 + i * 7 * SECOND + 62_500_000_000, "bench")
                for i in range(start, start + count)
            ],
        )  # fmt: skip
    return time.perf_counter() - started


def settle(client: object, database: str, limit_s: float = 120.0) -> float:
    """Waits until no merge runs in the database (merges right after a load would be measured too)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        merging = client.command(  # type: ignore[attr-defined]
            "SELECT count() FROM system.merges WHERE database = {d:String}", parameters={"d": database}
        )
        if int(merging) == 0:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


def percentiles(timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


def timed(requests: int, call: Callable[[int], None], warmup: int) -> list[float]:
    for warm in range(warmup):
        call(warm)
    timings = []
    for index in range(requests):
        started = time.perf_counter()
        call(index)
        timings.append(time.perf_counter() - started)
    return timings


def measure(api: TestClient, client: object, loaded_runs: int, requests: int, warmup: int) -> None:
    rng = random.Random(7)
    picks = [rng.randrange(loaded_runs) for _ in range(requests + warmup)]

    def timeline(index: int) -> None:
        response = api.get(f"/v1/runs/{run_id(picks[index])}/timeline")
        assert response.status_code == 200 and len(response.json()["entries"]) == SPANS_PER_RUN + 1, response.text

    def lookup(index: int) -> None:
        matches = api.get("/v1/writes", params={"ref": write_ref(picks[index], 0)}).json()["matches"]
        assert matches[0]["tool_call"]["tool_call_id"] == "call_w0", matches

    def audit(index: int) -> None:
        assert len(api.get(f"/v1/runs/{run_id(picks[index])}/audit").json()["findings"]) == 1

    listed = min(50, loaded_runs)

    def listing(index: int) -> None:
        assert len(api.get("/v1/runs", params={"limit": 50}).json()["runs"]) == listed

    def listing_filtered(index: int) -> None:
        params = {"limit": 50, "tool": "issue_refund", "autonomy_level": "approve_writes"}
        assert len(api.get("/v1/runs", params=params).json()["runs"]) == listed  # every run matches

    def target(index: int) -> None:
        assert api.get(f"/v1/targets/crm:customer/C-{picks[index] % 5000:05d}").json()["touches"]

    def scan_lookup(index: int) -> None:
        # The alternative a refs table avoids: finding the ref in spans through the bloom-filter index.
        client.query(  # type: ignore[attr-defined]
            "SELECT run_id FROM spans WHERE tenant = {t:String} AND write_ref = {r:String} LIMIT 1",
            parameters={"t": TENANT, "r": write_ref(picks[index], 0)},
        )

    spans = loaded_runs * SPANS_PER_RUN
    stored = client.command(  # type: ignore[attr-defined]
        "SELECT count() FROM spans WHERE tenant = {t:String}", parameters={"t": TENANT}
    )
    print(f"\n== {spans:,} spans stored ({loaded_runs:,} runs), {requests} requests each, warm")
    print(f"spans in the spans table: {int(stored):,}")
    for label, call, count in (
        ("GET /v1/runs/{id}/timeline", timeline, requests),
        ("GET /v1/runs/{id}/audit", audit, requests),
        ("GET /v1/writes?ref= (refs table)", lookup, requests),
        ("  spans scan by write_ref (bloom)", scan_lookup, requests),
        ("GET /v1/targets/{resource}", target, requests),
        ("GET /v1/runs?limit=50", listing, max(20, requests // 10)),
        ("GET /v1/runs?tool=&autonomy_level=", listing_filtered, max(20, requests // 10)),
    ):
        print(f"{label:<38} {percentiles(timed(count, call, warmup))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=31_250, help="runs at the large size (32 spans each: 1,000,000 spans)"
    )
    parser.add_argument("--small-runs", type=int, default=3_125, help="runs at the small size (100,000 spans)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests before each measurement")
    parser.add_argument("--smoke", action="store_true", help="100 then 200 runs, 5 requests: checks it still runs")
    args = parser.parse_args()
    if args.smoke:
        args.small_runs, args.runs, args.requests, args.warmup = 100, 200, 5, 2
    folder = Path(tempfile.mkdtemp(prefix="agentledger-bench-"))
    try:
        client = connect(chdb_dsn(folder / "clickhouse"), "bench")
        client.set_client_setting("use_query_condition_cache", 0)
        migrate(client)
        writer = SpanWriter(client)
        api = TestClient(create_app(client, QueryApiConfig(tenant=TENANT)))
        seconds = load(writer, client, 0, args.small_runs)
        rate = args.small_runs * SPANS_PER_RUN / seconds
        print(f"loaded {args.small_runs * SPANS_PER_RUN:,} spans in {seconds:.1f} s ({rate:,.0f} spans/s)")
        print(f"merges settled after {settle(client, 'bench'):.1f} s")
        measure(api, client, args.small_runs, args.requests, args.warmup)
        seconds = load(writer, client, args.small_runs, args.runs)
        rate = (args.runs - args.small_runs) * SPANS_PER_RUN / seconds
        print(
            f"\nloaded {(args.runs - args.small_runs) * SPANS_PER_RUN:,} more spans in {seconds:.1f} s"
            f" ({rate:,.0f} spans/s)"
        )
        settled = settle(client, "bench")
        parts = client.command(
            "SELECT count() FROM system.parts WHERE database = 'bench' AND table = 'spans' AND active"
        )
        print(f"merges settled after {settled:.1f} s; active parts of spans: {parts}")
        measure(api, client, args.runs, args.requests, args.warmup)
        client.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
