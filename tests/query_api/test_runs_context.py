"""RUNS_CONTEXT, the one read of a set of runs' index rows, writes and the tenant's stored tool catalogue:
each part is exactly what its own read gave (RUN_SUMMARY, the writes deduplicated by distinct_writes,
TOOL_CATALOGUE), for a run over several traces and days, a run with no writes, a run the index does not
know, several catalogue versions, and a stored catalogue that no longer validates."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.audit_config import ToolCatalogue
from agentledger.query_api.store.catalogue import StoredCatalogueError, load_catalogue, save_catalogue
from agentledger.query_api.store.runs import load_runs_context, locate_run
from tests.collector.span_batches import span_rows_table

SECOND = 1_000_000_000
DAY = 86_400 * SECOND
T0 = 1_795_168_800 * SECOND


def _span(run: str, trace: int, span: int, start_ns: int, **columns: Any) -> dict[str, Any]:
    return {
        "tenant": "default", "run_id": run, "trace_id": f"{trace:032x}", "span_id": f"{span:016x}",
        "name": "step", "entry_type": "span", "agent_id": "context-agent", "start_time": start_ns,
        "end_time": start_ns + SECOND, "duration_ns": SECOND, **columns,
    }  # fmt: skip


def _store(client: Client) -> TestClient:
    writer = SpanWriter(client)
    # run_a: two traces a day apart (two partitions), errors, no writes; stored in two blocks.
    writer.insert(span_rows_table([
        _span("run_a", 1, 1, T0, entry_type="run", name="invoke_agent", agent_name="Context agent"),
        _span("run_a", 1, 2, T0 + SECOND, status_code="ERROR"),
    ]))  # fmt: skip
    writer.insert(span_rows_table([
        _span("run_a", 2, 3, T0 + DAY, entry_type="run", name="invoke_agent", run_outcome="success"),
    ]))  # fmt: skip
    # run_b: one span, and writes reported for it (one redelivered).
    writer.insert(span_rows_table([_span("run_b", 3, 4, T0 + 2 * DAY, entry_type="run", name="invoke_agent")]))
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    write = {"run_id": "run_b", "system": "jira", "ref": "JIRA-7", "action": "create", "target": "t",
             "occurred_at": "2026-11-22T10:00:05Z"}  # fmt: skip
    for body in ({**write, "title": "first delivery"}, {**write, "ref": "JIRA-8"}, {**write, "title": "again"}):
        assert api.post("/v1/writes", json={"writes": [body]}).status_code == 202
    return api


def test_each_part_is_what_its_own_read_gives(client: Client) -> None:
    _store(client)
    oldest = ToolCatalogue.model_validate({"tools": [{"tool": "old_tool", "access": "read"}]})
    save_catalogue(client, "default", oldest, "k1")
    newest = ToolCatalogue.model_validate({"tools": [{"tool": "issue_refund", "access": "write"}]})
    save_catalogue(client, "default", newest, "k2")

    context = load_runs_context(client, "default", ["run_b", "run_a", "run_missing"])

    assert sorted(context.locations, key=lambda location: location.run_id) == [
        locate_run(client, "default", "run_a"),
        locate_run(client, "default", "run_b"),
    ]
    run_a = next(location for location in context.locations if location.run_id == "run_a")
    assert run_a.summary.trace_ids == [f"{1:032x}", f"{2:032x}"]
    assert (run_a.first_start_ns, run_a.last_end_ns) == (T0, T0 + DAY + SECOND)
    assert (run_a.summary.span_count, run_a.summary.error_count, run_a.summary.outcome) == (3, 1, "success")
    assert context.writes["run_a"] == [] and context.writes["run_missing"] == []
    assert [(w.ref, w.title) for w in context.writes["run_b"]] == [("JIRA-7", "again"), ("JIRA-8", "")]
    assert context.stored_catalogue("default") == load_catalogue(client, "default")
    stored = context.stored_catalogue("default")
    assert stored is not None and stored.catalogue == newest and stored.updated_by == "k2"


def test_a_tenant_without_a_stored_catalogue_has_none(client: Client) -> None:
    _store(client)

    context = load_runs_context(client, "default", ["run_a"])

    assert context.catalogue_row is None and context.stored_catalogue("default") is None
    assert [location.run_id for location in context.locations] == ["run_a"]


def test_a_stored_catalogue_that_no_longer_validates_fails_only_reads_that_audit_a_run(client: Client) -> None:
    api = _store(client)
    client.insert(
        "tool_catalogues", [["default", T0, "k1", '{"tools": [{"tool": "x", "access": "sideways"}]}']],
        column_names=["tenant", "updated_at", "updated_by", "catalogue"],
    )  # fmt: skip

    assert api.get("/v1/runs/run_missing/audit").status_code == 404
    assert api.get("/v1/runs/run_missing/timeline").status_code == 404
    with pytest.raises(StoredCatalogueError):
        load_runs_context(client, "default", ["run_a"]).stored_catalogue("default")
    with pytest.raises(StoredCatalogueError):
        api.get("/v1/runs/run_a/audit")
