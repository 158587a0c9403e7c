"""The runs listing's copy of the spans' usage (migration 0018): each listed run's workflow, tokens and cost
read from it are exactly those over its spans, with a replayed copy of a span counted once, late spans
counted, spans stored before the migration counted, each tenant's runs apart, holds and retention mirrored
from the spans and deletion removing the copy with the spans."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.ingest.clickhouse import connect
from agentledger.ingest.migrations import bundled_migrations, migrate
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.metrics_config import MetricsConfig, ModelPrice
from agentledger.schema import conventions as conv
from tests.collector.span_batches import span_rows_table

SECOND = 1_000_000_000
T0 = 1_795_168_800 * SECOND
PRICES = MetricsConfig(pricing={"gpt-4.1": ModelPrice(input_per_million=2.0, output_per_million=8.0)})
COLUMNS = ("run_id", "workflow", "input_tokens", "output_tokens", "cost_usd")


def _span(run: int, step: int, tenant: str = "default", **columns: Any) -> dict[str, Any]:
    start = T0 + run * 100 * SECOND + step * SECOND
    return {
        "tenant": tenant, "run_id": f"run_{run:03d}", "trace_id": f"{run:032x}", "span_id": f"{run:08x}{step:08x}",
        "name": "span", "entry_type": "tool_call", "agent_id": "usage-agent",
        "start_time": start, "end_time": start + SECOND, "duration_ns": SECOND, **columns,
    }  # fmt: skip


def _run(run: int, tenant: str = "default") -> list[dict[str, Any]]:
    """Run i: a run span of workflow wf-i, a prompt of 1000 * (i + 1) input and 100 output tokens of
    gpt-4.1, a tool call costing 0.5 USD and a plain step."""
    return [
        _span(run, 0, tenant, entry_type="run", attributes={conv.GEN_AI_WORKFLOW_NAME: f"wf-{run}"}),
        _span(run, 1, tenant, entry_type="prompt", model="gpt-4.1", input_tokens=1000 * (run + 1), output_tokens=100),
        _span(run, 2, tenant, attributes={conv.AGENTLEDGER_TOOL_COST: "0.5"}),
        _span(run, 3, tenant),
    ]


def _cost(input_tokens: int, output_tokens: int, tools: float) -> float:
    return (input_tokens * 2.0 + output_tokens * 8.0) / 1e6 + tools


def _listed(client: Client, tenant: str = "default", **params: str | int) -> list[tuple[Any, ...]]:
    api = TestClient(create_app(client, QueryApiConfig(tenant=tenant, metrics=PRICES)))
    response = api.get("/v1/runs", params=params)
    assert response.status_code == 200, response.text
    return [tuple(run[c] for c in COLUMNS) for run in response.json()["runs"]]


def _expected(run: int, extra_tokens: tuple[int, int] = (0, 0), tools: float = 0.5) -> tuple[Any, ...]:
    tokens = (1000 * (run + 1) + extra_tokens[0], 100 + extra_tokens[1])
    return (f"run_{run:03d}", f"wf-{run}", *tokens, _cost(*tokens, tools))


def test_a_replayed_copy_of_a_span_is_counted_once(client: Client) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table([span for run in range(4) for span in _run(run)]))
    # Run 2's prompt and tool call again, in a block with a new span (so not dropped as a whole block).
    writer.insert(span_rows_table([*_run(2)[1:3], _span(2, 4)]))

    assert int(client.command("SELECT count() FROM span_usage WHERE run_id = 'run_002'")) == 5  # 2 unmerged copies
    assert _listed(client) == [_expected(run) for run in (3, 2, 1, 0)]


def test_late_spans_are_counted(client: Client) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table([span for run in range(3) for span in _run(run)]))
    # After later runs were stored: run 0 gets a second prompt and another priced tool call.
    writer.insert(
        span_rows_table(
            [
                _span(0, 7, entry_type="prompt", model="gpt-4.1", input_tokens=50, output_tokens=5),
                _span(0, 8, attributes={conv.AGENTLEDGER_TOOL_COST: "0.25"}),
            ]
        )
    )

    assert _listed(client) == [_expected(2), _expected(1), _expected(0, (50, 5), 0.75)]


def test_spans_stored_before_the_migration_are_counted(engine_dsn: str, database: str) -> None:
    client = connect(engine_dsn, database)
    migrate(client, [m for m in bundled_migrations() if m.version < 18])
    SpanWriter(client).insert(span_rows_table([span for run in range(3) for span in _run(run)]))
    migrate(client)
    # Run 1 gets a late prompt after the migration: its usage is the sum of both.
    SpanWriter(client).insert(
        span_rows_table([_span(1, 9, entry_type="prompt", model="gpt-4.1", input_tokens=7, output_tokens=3)])
    )

    assert _listed(client) == [_expected(2), _expected(1, (7, 3)), _expected(0)]
    client.close()


def test_each_tenant_lists_only_its_own_usage(client: Client) -> None:
    writer = SpanWriter(client)
    writer.insert(span_rows_table([span for run in range(2) for span in _run(run)]))
    # The same run ids under another tenant, with other tokens.
    other = [{**span, "input_tokens": span.get("input_tokens", 0) * 3} for run in (0, 1) for span in _run(run, "acme")]
    writer.insert(span_rows_table(other))

    assert _listed(client) == [_expected(1), _expected(0)]
    assert _listed(client, tenant="acme") == [_expected(1, (4000, 0)), _expected(0, (2000, 0))]


def test_a_run_without_usage_lists_zeros(client: Client) -> None:
    SpanWriter(client).insert(span_rows_table([_span(5, 0), _span(5, 1)]))

    assert int(client.command("SELECT count() FROM span_usage")) == 0  # nothing to count is not copied
    assert _listed(client) == [("run_005", "", 0, 0, 0.0)]


def test_holds_retention_and_deletion_follow_the_spans(client: Client, api: TestClient) -> None:
    SpanWriter(client).insert(span_rows_table([span for run in range(3) for span in _run(run)]))

    def holds() -> list[tuple[str, int]]:
        return [
            (str(run_id), int(hold))
            for run_id, hold in client.query(
                "SELECT run_id, max(legal_hold) FROM span_usage GROUP BY run_id ORDER BY run_id"
            ).result_rows
        ]

    placed = api.post("/v1/holds", json={"scope": "run", "target": "run_001", "reason": "litigation"})
    assert placed.status_code == 201, placed.text
    assert holds() == [("run_000", 0), ("run_001", 1), ("run_002", 0)]
    released = api.post(f"/v1/holds/{placed.json()['hold_id']}/release")
    assert released.status_code == 200, released.text
    assert holds() == [("run_000", 0), ("run_001", 0), ("run_002", 0)]
    engine = str(
        client.command(
            "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'span_usage'"
        )
    )
    assert "TTL retain_until WHERE legal_hold = 0 " in engine

    deleted = api.delete("/v1/runs/run_002", params={"reason": "erasure request"})
    assert deleted.status_code == 200, deleted.text
    assert holds() == [("run_000", 0), ("run_001", 0)]


@pytest.mark.parametrize("limit", [1, 2])
def test_pages_of_the_listing_carry_their_usage(client: Client, limit: int) -> None:
    SpanWriter(client).insert(span_rows_table([span for run in range(3) for span in _run(run)]))
    api = TestClient(create_app(client, QueryApiConfig(tenant="default", metrics=PRICES)))
    pages, cursor = [], None
    while True:
        body = api.get("/v1/runs", params={"limit": limit, **({"cursor": cursor} if cursor else {})}).json()
        pages.append([tuple(run[c] for c in COLUMNS) for run in body["runs"]])
        cursor = body["next_cursor"]
        if not cursor:
            break

    assert [row for page in pages for row in page] == [_expected(2), _expected(1), _expected(0)]
    assert [len(page) for page in pages] == ([1, 1, 1] if limit == 1 else [2, 1])
