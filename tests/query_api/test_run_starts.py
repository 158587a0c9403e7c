"""The time-ordered run index (migration 0012) behind the runs listing and the audit's cost baseline: the
answers read through growing windows of its newest rows are exactly those of grouping every run, also
when a run's spans arrived in several insert blocks (its earliest block last), when runs start at the same
instant, when a filter matches only old runs, and for runs stored before the migration."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.ingest.clickhouse import connect
from agentledger.ingest.migrations import bundled_migrations, migrate
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.store import runs as run_store
from agentledger.query_api.times import rfc3339_nanos
from tests.collector.span_batches import span_rows_table

SECOND = 1_000_000_000
T0 = 1_795_168_800 * SECOND
RUNS = 240


def _start_ns(index: int) -> int:
    # Pairs of runs start at the same instant, so windows end on ties.
    return T0 + (index // 2) * 10 * SECOND


def _agent(index: int) -> str:
    return "rare-agent" if index < 3 else "busy-agent"


def _run_span(index: int) -> dict[str, Any]:
    start = _start_ns(index) + 5 * SECOND
    return {
        "tenant": "default", "run_id": f"run_{index:04d}", "trace_id": f"{index:032x}", "span_id": f"{index:08x}0001",
        "name": "invoke_agent", "entry_type": "run", "agent_id": _agent(index), "run_outcome": "success",
        "start_time": start, "end_time": start + SECOND, "duration_ns": SECOND,
    }  # fmt: skip


def _early_span(index: int) -> dict[str, Any]:
    """The run's first span, without an agent id, stored in a later insert than the run span."""
    start = _start_ns(index)
    return {
        "tenant": "default", "run_id": f"run_{index:04d}", "trace_id": f"{index:032x}", "span_id": f"{index:08x}0002",
        "parent_span_id": f"{index:08x}0001", "name": "chat", "model": "gpt-4.1-mini",
        "input_tokens": 100 + index, "output_tokens": 10, "start_time": start, "end_time": start + SECOND,
        "duration_ns": SECOND, "entry_type": "tool_call" if index % 50 == 7 else "prompt",
        "tool_name": "issue_refund" if index % 50 == 7 else "",
    }  # fmt: skip


def _store(client: Client, indexes: range) -> None:
    writer = SpanWriter(client)
    for first in range(indexes.start, indexes.stop, 40):
        block = range(first, min(first + 40, indexes.stop))
        writer.insert(span_rows_table(_run_span(i) for i in block))
    for first in range(indexes.start, indexes.stop, 40):
        block = range(first, min(first + 40, indexes.stop))
        writer.insert(span_rows_table(_early_span(i) for i in block))


def _expected(keep: Any = lambda index: True) -> list[str]:
    """Newest first by (first start, run id), as grouping the whole index orders them."""
    chosen = [i for i in range(RUNS) if keep(i)]
    return [f"run_{i:04d}" for i in sorted(chosen, key=lambda i: (_start_ns(i), f"run_{i:04d}"), reverse=True)]


def _all_pages(api: TestClient, **params: Any) -> list[str]:
    listed: list[str] = []
    cursor: str | None = None
    while True:
        page = api.get("/v1/runs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        listed += [run["run_id"] for run in page.json()["runs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return listed


@pytest.fixture
def stored(client: Client) -> Client:
    _store(client, range(RUNS))
    return client


def test_each_block_of_a_run_is_a_row_of_the_time_ordered_index(stored: Client) -> None:
    rows = stored.query(
        "SELECT toUnixTimestamp64Nano(first_start), agent_id FROM run_starts WHERE run_id = 'run_0005'"
        " ORDER BY first_start"
    ).result_rows

    assert rows == [(_start_ns(5), ""), (_start_ns(5) + 5 * SECOND, "busy-agent")]


@pytest.mark.parametrize("limit", [1, 7, 50, 200])
def test_every_page_of_the_listing_follows_the_exact_start_of_each_run(
    stored: Client, api: TestClient, limit: int
) -> None:
    assert _all_pages(api, limit=limit) == _expected()


def test_the_first_page_shows_each_runs_exact_start_and_counts(stored: Client, api: TestClient) -> None:
    first = api.get("/v1/runs", params={"limit": 1}).json()["runs"][0]

    newest = RUNS - 1
    assert (first["run_id"], first["first_start"], first["span_count"], first["agent_id"]) == (
        f"run_{newest:04d}",
        rfc3339_nanos(_start_ns(newest)),
        2,
        "busy-agent",
    )


def test_a_filter_matching_only_old_runs_widens_the_window_until_it_finds_them(stored: Client, api: TestClient) -> None:
    assert _all_pages(api, limit=2, agent="rare-agent") == _expected(lambda i: i < 3)
    assert _all_pages(api, limit=3, tool="issue_refund") == _expected(lambda i: i % 50 == 7)
    assert _all_pages(api, limit=5, agent="nobody") == []


def test_time_bounds_and_ties_at_the_window_edge(stored: Client, api: TestClient) -> None:
    since, until = rfc3339_nanos(_start_ns(40)), rfc3339_nanos(_start_ns(201))

    listed = _all_pages(api, limit=4, since=since, until=until)

    assert listed == _expected(lambda i: _start_ns(40) <= _start_ns(i) <= _start_ns(201))


def test_past_the_largest_window_the_listing_groups_the_whole_index(
    stored: Client, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_store, "MAX_WINDOW", 100)

    assert _all_pages(api, limit=2, agent="rare-agent") == _expected(lambda i: i < 3)
    assert _all_pages(api, limit=30) == _expected()


def test_the_cost_baseline_reads_the_agents_latest_earlier_runs_through_windows(stored: Client) -> None:
    rare = run_store.locate_run(stored, "default", "run_0002")
    busy = run_store.locate_run(stored, "default", "run_0200")
    assert rare is not None and busy is not None

    baselines = run_store.load_token_baselines(stored, "default", [rare, busy], per_agent=20)

    # Tokens of each run: its prompt's 100 + index input and 10 output tokens, newest run first.
    assert baselines == {
        "run_0002": [1 + 100 + 10, 0 + 100 + 10],
        "run_0200": [index + 110 for index in range(199, 179, -1)],
    }


def test_runs_stored_before_the_migration_are_in_the_time_ordered_index(engine_dsn: str, database: str) -> None:
    client = connect(engine_dsn, database)
    migrate(client, [m for m in bundled_migrations() if m.version < 12])
    _store(client, range(RUNS))
    migrate(client)
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))

    assert _all_pages(api, limit=50) == _expected()
    assert _all_pages(api, limit=2, agent="rare-agent") == _expected(lambda i: i < 3)
    client.close()
