"""Read-path benchmark of the query API on embedded chDB: timeline, reverse write lookup, runs listing.

Loads synthetic agent runs (32 spans over 2 traces each, with a downstream write per run) through the
ingest span writer as Arrow batches, then times the API endpoints in process (FastAPI TestClient, so
request handling and JSON are included) for random runs, at each size of --sizes in turn (the store
grows from one size to the next). Prints p50/p95 in milliseconds; the query condition cache is off so
repeated predicates are not cached. --queries also prints, per endpoint, the round trips to ClickHouse
per request and the share of the request spent waiting for them; --statements breaks that down by
statement (named as in query_api/queries.py). --endpoints times only the endpoints named.
--read-workers sets the API's read pool (0: every read in turn through the main client, as before the
pool); --ingest-rate inserts spans of another tenant through the main client while the reads are timed,
as the collector's exporter does in `agentledger up`.

    .venv/bin/python benchmarks/query.py [--sizes 100000,1000000,10000000] [--requests 300] [--queries]
    .venv/bin/python benchmarks/query.py --smoke

--store DIR keeps the store in DIR: a later run (of other code, say) measures the same spans again and
loads only the runs a larger size needs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the span-batch builder lives with the tests

from harness import embedded_chdb

from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.read_pool import DEFAULT_WORKERS, InlineReads, ReadPool, Reads, handle_opener
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


def _template_table(tenant: str = TENANT) -> pa.Table:
    common = {"tenant": tenant, "status_code": "OK", "service_name": "refund-agent",
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


# The tenant and first run index of the runs --ingest-rate writes while the reads are timed: apart from the
# benchmark's own runs, so a kept store's count of loaded runs stays right.
INGEST_TENANT = "bench-ingest"
INGEST_FIRST_RUN = 100_000_000


@contextmanager
def ingesting(writer: SpanWriter, rate: int, block_runs: int) -> Iterator[list[float]]:
    """While inside: a thread inserts runs of INGEST_TENANT through `writer` (the main client, as the
    collector's ClickHouse exporter does) at `rate` spans/s, in blocks of `block_runs` runs; yields the
    insert times in seconds, filled as it goes. A store kept with --store grows by what it inserts."""
    inserts: list[float] = []
    if rate <= 0:
        yield inserts
        return
    stop = threading.Event()
    interval = block_runs * SPANS_PER_RUN / rate
    template = _template_table(INGEST_TENANT)
    first = INGEST_FIRST_RUN + int(time.time()) % 1_000_000 * 1_000  # a later run of a kept store adds new runs

    def insert_blocks() -> None:
        due, index = time.perf_counter(), first
        while not stop.is_set():
            block = _batch(template, index, block_runs)
            started = time.perf_counter()
            writer.insert(block)
            inserts.append(time.perf_counter() - started)
            index += block_runs
            due += interval
            stop.wait(max(0.0, due - time.perf_counter()))

    thread = threading.Thread(target=insert_blocks, name="bench-ingest")
    thread.start()
    try:
        yield inserts
    finally:
        stop.set()
        thread.join()


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


def statement_names() -> dict[str, str]:
    """The query API's statements by text, named as in query_api/queries.py (a dict or tuple of statements
    names each by its key or position), so a round trip can be told by the constant it runs."""
    from agentledger.query_api import queries

    names: dict[str, str] = {}
    for name, value in vars(queries).items():
        if name.startswith("__"):
            continue
        if isinstance(value, str):
            names.setdefault(value, name)
        elif isinstance(value, dict):
            for key, text in value.items():
                if isinstance(text, str):
                    names.setdefault(text, f"{name}[{key}]")
        elif isinstance(value, tuple):
            for position, text in enumerate(value):
                if isinstance(text, str):
                    names.setdefault(text, f"{name}[{position}]")
    return names


class QueryClock:
    """Counts the clients' round trips to ClickHouse and the time spent in them, by wrapping the clients'
    query methods on the instances (the API holds the same client objects: its main client and the read
    pool's handles, registered by `opened` as the pool opens them); each round trip's time is also kept
    under the name of the statement it ran (statement_names), for --statements. Reads of one request run
    at once, so the time in ClickHouse is summed over them and can exceed the request's."""

    METHODS = ("query", "command", "query_arrow", "query_np", "query_df", "raw_query", "insert", "insert_arrow")

    def __init__(self, client: Any) -> None:
        self.clients = [client]
        self.calls = 0
        self.seconds = 0.0
        self.by_statement: dict[str, list[float]] = {}
        self._names = statement_names()
        self._lock = threading.Lock()
        self._running = False

    def opened(self, client: Any) -> Any:
        """Registers a client the read pool opened (timed from now on if the clock is running)."""
        with self._lock:
            self.clients.append(client)
            if self._running:
                self._wrap_client(client)
        return client

    def _wrap_client(self, client: Any) -> None:
        for name in self.METHODS:
            setattr(client, name, self._wrap(name, getattr(client, name)))

    def _unwrap_client(self, client: Any) -> None:
        for name in self.METHODS:
            delattr(client, name)

    def _name(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        text = args[0] if args else kwargs.get("query", kwargs.get("cmd", kwargs.get("table", "")))
        if not isinstance(text, str):
            return method
        return self._names.get(text, f"{method}: {' '.join(text.split())[:40]}")

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.calls += 1
                    self.seconds += elapsed
                    self.by_statement.setdefault(self._name(name, args, kwargs), []).append(elapsed)

        return timed_call

    @contextmanager
    def running(self) -> Iterator[QueryClock]:
        with self._lock:
            for client in self.clients:
                self._wrap_client(client)
            self.calls, self.seconds, self.by_statement = 0, 0.0, {}
            self._running = True
        try:
            yield self
        finally:
            with self._lock:
                self._running = False
                for client in self.clients:
                    self._unwrap_client(client)

    def statement_lines(self, requests: int) -> list[str]:
        """Per statement, most time first: round trips per request, median and mean ms per round trip,
        and ms per request."""
        lines = []
        for name, timings in sorted(self.by_statement.items(), key=lambda item: -sum(item[1])):
            median, mean = statistics.median(timings) * 1000, statistics.fmean(timings) * 1000
            lines.append(
                f"{'':<8}{name:<40} {len(timings) / requests:4.1f}/request  median {median:6.2f} ms"
                f"  mean {mean:6.2f} ms  {sum(timings) / requests * 1000:6.2f} ms/request"
            )
        return lines


def timed(requests: int, call: Callable[[int], None], warmup: int) -> list[float]:
    for warm in range(warmup):
        call(warm)
    timings = []
    for index in range(requests):
        started = time.perf_counter()
        call(index)
        timings.append(time.perf_counter() - started)
    return timings


def measure(
    api: TestClient,
    client: Any,
    clock: QueryClock,
    loaded_runs: int,
    requests: int,
    warmup: int,
    queries: bool,
    statements: bool = False,
    endpoints: frozenset[str] = frozenset(),
) -> None:
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
        client.query(
            "SELECT run_id FROM spans WHERE tenant = {t:String} AND write_ref = {r:String} LIMIT 1",
            parameters={"t": TENANT, "r": write_ref(picks[index], 0)},
        )

    spans = loaded_runs * SPANS_PER_RUN
    stored = client.command("SELECT count() FROM spans WHERE tenant = {t:String}", parameters={"t": TENANT})
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
        if endpoints and label.strip() not in endpoints:
            continue
        print(f"{label:<38} {percentiles(timed(count, call, warmup))}")
        if queries or statements:
            with clock.running():
                began, began_cpu = time.perf_counter(), time.process_time()
                for index in range(count):
                    call(index)
                total, cpu = time.perf_counter() - began, time.process_time() - began_cpu
            # CPU time of the whole process (chDB's threads included) is the figure least moved by other
            # work on a shared machine; wall time waits for the cores too.
            print(
                f"{'':<4}round trips per request {clock.calls / count:5.1f}; in ClickHouse (summed over reads"
                f" at once) {clock.seconds / count * 1000:7.2f} ms of {total / count * 1000:7.2f} ms"
                f" ({clock.seconds / total:4.0%}); CPU {cpu / count * 1000:7.2f} ms per request"
            )
            if statements:
                print("\n".join(clock.statement_lines(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="100000,1000000",
        help="comma-separated stored span counts to measure at, in increasing order (runs of 32 spans each)",
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests before each measurement")
    parser.add_argument(
        "--queries", action="store_true", help="also count round trips and time in ClickHouse per request"
    )
    parser.add_argument(
        "--statements", action="store_true", help="with the round trips, each statement's round trips and time"
    )
    parser.add_argument(
        "--endpoints",
        default="",
        help="comma-separated labels of the endpoints to time, as printed; all if empty",
    )
    parser.add_argument(
        "--store", type=Path, help="keep the store in this folder and reuse the runs already loaded there"
    )
    parser.add_argument(
        "--read-workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="the API's read pool (api.read_workers); 0: every read in turn through the main client, as before"
        " the pool",
    )
    parser.add_argument(
        "--ingest-rate",
        type=int,
        default=0,
        help="spans/s inserted through the main client while the reads are timed (0: none); grows a kept store",
    )
    parser.add_argument("--ingest-block", type=int, default=20_000, help="spans per insert with --ingest-rate")
    parser.add_argument("--smoke", action="store_true", help="3,200 then 6,400 spans, 5 requests: checks it runs")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.requests, args.warmup = "3200,6400", 5, 2
    try:
        sizes = [int(size.replace("_", "")) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be span counts separated by commas, not {args.sizes!r}")
    if not sizes or sizes != sorted(sizes) or sizes[0] < SPANS_PER_RUN:
        parser.error(f"--sizes must increase and each be at least {SPANS_PER_RUN} spans (one run)")
    with embedded_chdb("bench", kept_in=args.store) as client:
        writer = SpanWriter(client)
        clock = QueryClock(client)
        # The pool's handles read with the query condition cache off too (embedded_chdb), and are timed.
        open_handle, owned = handle_opener(client, settings={"use_query_condition_cache": 0})
        reads: Reads = (
            ReadPool(lambda: clock.opened(open_handle()), args.read_workers, owned)
            if args.read_workers > 0
            else InlineReads(client)
        )
        api = TestClient(create_app(client, QueryApiConfig(tenant=TENANT), reads))
        try:
            # Runs are loaded in index order, so the runs a kept store holds are the first `loaded`.
            loaded = int(client.command("SELECT uniqExact(run_id) FROM runs WHERE tenant = {t:String}",
                                        parameters={"t": TENANT}))  # fmt: skip
            if loaded:
                print(f"\nreusing {loaded:,} runs ({loaded * SPANS_PER_RUN:,} spans) stored in {args.store}")
            for size in sizes:
                runs = -(-size // SPANS_PER_RUN)
                if runs < loaded:
                    print(f"\nskipping {size:,} spans: the store already holds {loaded * SPANS_PER_RUN:,}")
                    continue
                if runs > loaded:
                    seconds = load(writer, client, loaded, runs)
                    more = " more" if loaded else ""
                    rate = (runs - loaded) * SPANS_PER_RUN / seconds
                    added = (runs - loaded) * SPANS_PER_RUN
                    print(f"\nloaded {added:,}{more} spans in {seconds:.1f} s ({rate:,.0f} spans/s)")
                    loaded = runs
                settled = settle(client, "bench")
                parts = client.command(
                    "SELECT count() FROM system.parts WHERE database = 'bench' AND table = 'spans' AND active"
                )
                print(f"merges settled after {settled:.1f} s; active parts of spans: {parts}")
                endpoints = frozenset(label.strip() for label in args.endpoints.split(",") if label.strip())
                block_runs = max(1, args.ingest_block // SPANS_PER_RUN)
                with ingesting(writer, args.ingest_rate, block_runs) as inserts:
                    measure(
                        api, client, clock, loaded, args.requests, args.warmup, args.queries, args.statements, endpoints
                    )
                if args.ingest_rate > 0:
                    stored = client.command(
                        "SELECT count() FROM spans WHERE tenant = {t:String}", parameters={"t": INGEST_TENANT}
                    )
                    print(
                        f"while ingesting {args.ingest_rate:,} spans/s through the main client in blocks of"
                        f" {block_runs * SPANS_PER_RUN:,}: {len(inserts)} inserts, median"
                        f" {statistics.median(inserts) * 1000 if inserts else 0:.0f} ms each;"
                        f" {int(stored):,} spans of {INGEST_TENANT} stored"
                    )

        finally:
            reads.close()  # its handles before the client (read_pool.py)


if __name__ == "__main__":
    main()
