"""benchmarks/query.py at smoke size: it loads its synthetic runs through the span writer (every span
stored), answers every endpoint it times with the expected content (the benchmark asserts each answer) and
prints p50/p95 for each, at both sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.benchmarks.running import run_benchmark

ENDPOINTS = [
    "GET /v1/runs/{id}/timeline",
    "GET /v1/runs/{id}/audit",
    "GET /v1/writes?ref= (refs table)",
    "  spans scan by write_ref (bloom)",
    "GET /v1/targets/{resource}",
    "GET /v1/runs?limit=50",
    "GET /v1/runs?tool=&autonomy_level=",
]
TIMING = re.compile(r"^(?P<label>.+?)\s+p50\s+[0-9.]+ ms   p95\s+[0-9.]+ ms$")


def test_the_query_benchmark_runs_at_smoke_size_over_every_stored_span() -> None:
    output = run_benchmark("query.py", "--smoke")
    lines = output.splitlines()

    # 100 runs then 100 more, of 32 spans each.
    assert re.search(r"^loaded 3,200 spans in [0-9.]+ s \([0-9,]+ spans/s\)$", output, re.MULTILINE), output
    assert re.search(r"^loaded 3,200 more spans in [0-9.]+ s \([0-9,]+ spans/s\)$", output, re.MULTILINE), output
    sections = [index for index, line in enumerate(lines) if line.startswith("== ")]
    assert [lines[index] for index in sections] == [
        "== 3,200 spans stored (100 runs), 5 requests each, warm",
        "== 6,400 spans stored (200 runs), 5 requests each, warm",
    ]
    for index, stored in zip(sections, ("3,200", "6,400"), strict=True):
        assert lines[index + 1] == f"spans in the spans table: {stored}"
        timings = [TIMING.match(line) for line in lines[index + 2 : index + 2 + len(ENDPOINTS)]]
        assert [match["label"] if match else None for match in timings] == ENDPOINTS


ROUND_TRIPS = re.compile(
    r"^ {4}round trips per request +[0-9.]+; in ClickHouse \(summed over reads at once\)"
    r" +[0-9.]+ ms of +[0-9.]+ ms \( *[0-9]+%\);"
    r" CPU +[0-9.]+ ms per request$"
)


def test_the_query_benchmark_measures_each_of_the_sizes_asked_for_and_counts_round_trips() -> None:
    output = run_benchmark("query.py", "--sizes", "64,96", "--requests", "2", "--warmup", "1", "--queries")
    lines = output.splitlines()

    sections = [line for line in lines if line.startswith("== ")]
    assert sections == [
        "== 64 spans stored (2 runs), 2 requests each, warm",
        "== 96 spans stored (3 runs), 2 requests each, warm",
    ]
    timings = [match["label"] for line in lines if (match := TIMING.match(line))]
    assert timings == ENDPOINTS * 2
    assert len([line for line in lines if ROUND_TRIPS.match(line)]) == len(ENDPOINTS) * 2, output


def test_a_kept_store_is_reused_and_only_grown(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = run_benchmark("query.py", "--sizes", "64", "--requests", "1", "--warmup", "0", "--store", store)
    second = run_benchmark("query.py", "--sizes", "32,96", "--requests", "1", "--warmup", "0", "--store", store)

    assert re.search(r"^loaded 64 spans in ", first, re.MULTILINE), first
    lines = second.splitlines()
    assert f"reusing 2 runs (64 spans) stored in {store}" in lines, second
    assert "skipping 32 spans: the store already holds 64" in lines, second
    assert re.search(r"^loaded 32 more spans in ", second, re.MULTILINE), second
    assert [line for line in lines if line.startswith("== ")] == ["== 96 spans stored (3 runs), 1 requests each, warm"]


STATEMENT = re.compile(
    r"^ {8}(?P<name>\S+) +(?P<per_request>[0-9.]+)/request  median +[0-9.]+ ms  mean +[0-9.]+ ms +[0-9.]+ ms/request$"
)


def test_statements_break_the_round_trips_down_by_statement_for_the_endpoints_named() -> None:
    output = run_benchmark(
        "query.py", "--sizes", "64", "--requests", "2", "--warmup", "1", "--statements",
        "--endpoints", "GET /v1/runs/{id}/timeline,GET /v1/runs/{id}/audit",
    )  # fmt: skip
    lines = output.splitlines()

    assert [match["label"] for line in lines if (match := TIMING.match(line))] == ENDPOINTS[:2]
    statements = [(match["name"], float(match["per_request"])) for line in lines if (match := STATEMENT.match(line))]
    # Named as in query_api/queries.py; together as many round trips as the endpoint's count.
    assert {name for name, _ in statements} >= {"RUN_SUMMARY", "RUN_SPANS", "RUNS_FACT_SPANS", "RUN_STARTS_WINDOW"}
    trips = [float(line.split()[4].rstrip(";")) for line in lines if ROUND_TRIPS.match(line)]
    assert len(trips) == 2 and sum(per_request for _, per_request in statements) == pytest.approx(sum(trips))


INGESTING = re.compile(
    r"^while ingesting 4,000 spans/s through the main client in blocks of 640: (?P<inserts>[0-9]+) inserts,"
    r" median [0-9]+ ms each; (?P<stored>[0-9,]+) spans of bench-ingest stored$"
)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_reads_are_timed_while_spans_are_inserted_through_the_main_client(workers: str) -> None:
    output = run_benchmark(
        "query.py", "--sizes", "64", "--requests", "20", "--warmup", "1", "--read-workers", workers,
        "--ingest-rate", "4000", "--ingest-block", "640", "--endpoints", "GET /v1/runs/{id}/timeline",
    )  # fmt: skip
    lines = output.splitlines()

    assert [match["label"] for line in lines if (match := TIMING.match(line))] == ENDPOINTS[:1]
    ingested = [match for line in lines if (match := INGESTING.match(line))]
    assert len(ingested) == 1, output
    inserts = int(ingested[0]["inserts"])
    assert inserts >= 1 and int(ingested[0]["stored"].replace(",", "")) == inserts * 640, output
