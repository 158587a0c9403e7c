"""The runs listing's one-table index (migration 0019, runs and run_facts under one key): runs stored before
the migration keep their index and facts, late spans and replayed blocks change them exactly as they change
runs and run_facts, filters and pages see the same runs, and deleting a run removes its row."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.ingest.clickhouse import connect
from agentledger.ingest.migrations import bundled_migrations, migrate
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.schema import conventions as conv
from tests.collector.span_batches import span_rows_table

SECOND = 1_000_000_000
T0 = 1_795_168_800 * SECOND
COLUMNS = ("run_id", "tools", "autonomy_level", "span_count", "error_count", "write_tool_calls", "duration_ms")


def _span(run: int, step: int, **columns: Any) -> dict[str, Any]:
    start = T0 + run * 100 * SECOND + step * SECOND
    return {
        "tenant": "default", "run_id": f"run_{run:03d}", "trace_id": f"{run:032x}", "span_id": f"{run:08x}{step:08x}",
        "name": "span", "entry_type": "prompt", "agent_id": "list-agent",
        "start_time": start, "end_time": start + SECOND, "duration_ns": SECOND, **columns,
    }  # fmt: skip


def _run(run: int) -> list[dict[str, Any]]:
    """Run i: a run span at autonomy level `level-i % 2`, a read call of search and, for odd i, a failed write
    call of refund."""
    spans = [
        _span(run, 0, entry_type="run", attributes={conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL: f"level-{run % 2}"}),
        _span(run, 1, entry_type="tool_call", tool_name="search", tool_access="read"),
    ]
    if run % 2:
        spans.append(
            _span(run, 2, entry_type="tool_call", tool_name="refund", tool_access="write", status_code="ERROR")
        )
    return spans


def _listed(client: Client, **params: str | int) -> list[tuple[Any, ...]]:
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    response = api.get("/v1/runs", params=params)
    assert response.status_code == 200, response.text
    return [tuple(run[c] for c in COLUMNS) for run in response.json()["runs"]]


def _expected(run: int, late_tool: str = "") -> tuple[Any, ...]:
    tools = sorted({"search", *(["refund"] if run % 2 else []), *([late_tool] if late_tool else [])})
    spans = 2 + run % 2 + (1 if late_tool else 0)
    duration = 8000.0 if late_tool else (2 + run % 2) * 1000.0  # the late span ends at 8 s
    return (f"run_{run:03d}", tools, f"level-{run % 2}", spans, run % 2, run % 2, duration)


def test_runs_stored_before_the_migration_keep_their_index_and_facts(engine_dsn: str, database: str) -> None:
    client = connect(engine_dsn, database)
    migrate(client, [m for m in bundled_migrations() if m.version < 19])
    SpanWriter(client).insert(span_rows_table([span for run in range(4) for span in _run(run)]))
    migrate(client)
    # Run 0 gets a late tool call after the migration (its facts and index from both sides add up).
    SpanWriter(client).insert(span_rows_table([_span(0, 7, entry_type="tool_call", tool_name="notify")]))

    assert _listed(client) == [_expected(3), _expected(2), _expected(1), _expected(0, "notify")]
    assert _listed(client, tool="refund") == [_expected(3), _expected(1)]
    assert _listed(client, tool="notify", autonomy_level="level-0") == [_expected(0, "notify")]
    client.close()


def test_late_spans_and_replayed_blocks_count_as_in_the_run_index(client: Client) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table([span for run in range(3) for span in _run(run)]))
    writer.insert(span_rows_table([_span(1, 7, entry_type="tool_call", tool_name="notify")]))
    index = client.query(
        "SELECT run_id, sum(span_count), sum(error_count), sum(write_tool_calls) FROM runs GROUP BY run_id"
        " ORDER BY run_id"
    ).result_rows
    listed = {row[0]: row for row in _listed(client)}

    assert _listed(client) == [_expected(2), _expected(1, "notify"), _expected(0)]
    # The listing's counts are the run index's (migration 0001), whatever copies it holds.
    assert [(run_id, *listed[run_id][3:6]) for run_id, *_ in index] == [tuple(row) for row in index]


def test_pages_and_deletion(client: Client, api: TestClient) -> None:
    SpanWriter(client).insert(span_rows_table([span for run in range(5) for span in _run(run)]))
    pages, cursor = [], None
    while True:
        body = api.get("/v1/runs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        pages.append([run["run_id"] for run in body["runs"]])
        cursor = body["next_cursor"]
        if not cursor:
            break
    deleted = api.delete("/v1/runs/run_003", params={"reason": "erasure request"})

    assert pages == [["run_004", "run_003"], ["run_002", "run_001"], ["run_000"]]
    assert deleted.status_code == 200, deleted.text
    assert int(client.command("SELECT count() FROM run_list WHERE run_id = 'run_003'")) == 0
    assert [row[0] for row in _listed(client)] == ["run_004", "run_002", "run_001", "run_000"]
