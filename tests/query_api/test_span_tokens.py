"""The cost baseline's copy of the spans' tokens (migration 0013): the baseline read from it is exactly the
sum over the spans, with a replayed copy of a span counted once, late spans of an earlier run counted,
spans stored before the migration counted, and holds and retention mirrored from the spans."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.ingest.clickhouse import connect
from agentledger.ingest.migrations import bundled_migrations, migrate
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.store import runs as run_store
from tests.collector.span_batches import span_rows_table

SECOND = 1_000_000_000
T0 = 1_795_168_800 * SECOND
AGENT = "cost-agent"


def _span(run: int, step: int, tokens: tuple[int, int] = (0, 0), **columns: Any) -> dict[str, Any]:
    start = T0 + run * 100 * SECOND + step * SECOND
    return {
        "tenant": "default", "run_id": f"run_{run:03d}", "trace_id": f"{run:032x}", "span_id": f"{run:08x}{step:08x}",
        "name": "chat", "entry_type": "prompt" if any(tokens) else "run", "agent_id": AGENT,
        "input_tokens": tokens[0], "output_tokens": tokens[1],
        "start_time": start, "end_time": start + SECOND, "duration_ns": SECOND, **columns,
    }  # fmt: skip


def _runs(count: int) -> list[dict[str, Any]]:
    """Run i: a run span without tokens and one prompt of 1000 + i input and 10 output tokens."""
    return [span for run in range(count) for span in (_span(run, 0), _span(run, 1, (1000 + run, 10)))]


def _baseline(client: Client, run: int, per_agent: int = 5) -> list[int]:
    location = run_store.locate_run(client, "default", f"run_{run:03d}")
    assert location is not None
    return run_store.load_token_baselines(client, "default", [location], per_agent)[location.run_id]


def _sum_over_spans(client: Client, runs: list[int]) -> list[int]:
    """What the baseline must equal: each distinct span's tokens, summed per run from the spans table."""
    rows = dict(
        client.query(
            "SELECT run_id, sum(input_tokens + output_tokens) FROM"
            " (SELECT run_id, input_tokens, output_tokens FROM spans FINAL WHERE run_id IN {runs:Array(String)})"
            " GROUP BY run_id",
            parameters={"runs": [f"run_{run:03d}" for run in runs]},
        ).result_rows
    )
    return [int(rows.get(f"run_{run:03d}", 0)) for run in runs]


def test_a_replayed_copy_of_a_span_is_counted_once(client: Client) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table(_runs(8)))
    # The prompt of run 3 again, in a block of its own with one new span (so not dropped as a whole block).
    writer.insert(span_rows_table([_span(3, 1, (1003, 10)), _span(9, 0)]))
    copies = client.command("SELECT count() FROM span_tokens WHERE run_id = 'run_003'")

    assert int(copies) == 2  # unmerged: both copies are stored, the reader keeps one
    assert _baseline(client, 7) == [1016, 1015, 1014, 1013, 1012] == _sum_over_spans(client, [6, 5, 4, 3, 2])


def test_late_spans_of_an_earlier_run_are_counted(client: Client) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table(_runs(6)))
    # Run 2 gets a second prompt after later runs were stored; run 4 a span without tokens.
    writer.insert(span_rows_table([_span(2, 5, (500, 7)), _span(4, 6)]))

    assert _baseline(client, 5, per_agent=4) == [1014, 1013, 1012 + 507, 1011]
    assert _baseline(client, 5, per_agent=4) == _sum_over_spans(client, [4, 3, 2, 1])


def test_spans_stored_before_the_migration_are_counted(engine_dsn: str, database: str) -> None:
    client = connect(engine_dsn, database)
    migrate(client, [m for m in bundled_migrations() if m.version < 13])
    SpanWriter(client).insert(span_rows_table(_runs(4)))
    migrate(client)
    SpanWriter(client).insert(span_rows_table([_span(4, 0), _span(4, 1, (7, 3)), _span(5, 0)]))

    assert _baseline(client, 4) == [1013, 1012, 1011, 1010]
    assert _baseline(client, 5) == [10, 1013, 1012, 1011, 1010]  # stored before and after the migration
    client.close()


def test_holds_and_retention_are_mirrored_from_the_spans(client: Client, api: TestClient) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table(_runs(3)))

    def holds() -> list[tuple[str, int]]:
        return [
            (str(run_id), int(hold))
            for run_id, hold in client.query("SELECT run_id, legal_hold FROM span_tokens ORDER BY run_id").result_rows
        ]

    placed = api.post("/v1/holds", json={"scope": "run", "target": "run_001", "reason": "litigation"})
    assert placed.status_code == 201, placed.text
    assert holds() == [("run_000", 0), ("run_001", 1), ("run_002", 0)]
    released = api.post(f"/v1/holds/{placed.json()['hold_id']}/release")
    assert released.status_code == 200, released.text
    assert holds() == [("run_000", 0), ("run_001", 0), ("run_002", 0)]
    engines = dict(
        client.query(
            "SELECT name, engine_full FROM system.tables"
            " WHERE database = currentDatabase() AND name IN ('spans', 'span_tokens')"
        ).result_rows
    )
    ttl = "TTL retain_until WHERE legal_hold = 0 "
    assert ttl in engines["spans"] and ttl in engines["span_tokens"]
