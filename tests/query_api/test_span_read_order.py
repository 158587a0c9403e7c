"""Reads that order and deduplicate in the store, not in SQL (ORDER BY / LIMIT 1 BY cost chDB more than the
few rows they order): the timeline and the audit still get the run's spans in (start, trace id, span id)
order, one copy each, the earliest stored copy of a span winning; a run's writes once each, the newest
received copy of a redelivered write winning, in (occurrence, system, ref) order."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.store.runs import first_copies, load_runs_span_facts, load_runs_writes, locate_runs
from agentledger.query_api.writes import load_run_writes
from tests.collector.span_batches import span_rows_table

SECOND = 1_000_000_000
T0 = 1_795_168_800 * SECOND


def _span(trace: int, span: int, start_s: int, name: str) -> dict[str, Any]:
    start = T0 + start_s * SECOND
    return {
        "tenant": "default", "run_id": "run_o", "trace_id": f"{trace:032x}", "span_id": f"{span:016x}",
        "name": name, "entry_type": "run" if span == 1 else "span", "agent_id": "order-agent",
        "start_time": start, "end_time": start + SECOND, "duration_ns": SECOND,
    }  # fmt: skip


def test_first_copies_orders_by_start_then_trace_then_span_and_keeps_the_earliest_copy() -> None:
    rows = [(5, "b", "1", "late copy"), (3, "b", "2", "x"), (3, "a", "9", "y"), (1, "b", "1", "early copy"),
            (3, "a", "9", "same key again")]  # fmt: skip

    kept = first_copies(rows, lambda row: (row[0], row[1], row[2]))

    assert kept == [(1, "b", "1", "early copy"), (3, "a", "9", "y"), (3, "b", "2", "x")]


def test_timeline_and_audit_read_spans_in_order_with_one_copy_each(client: Client) -> None:
    writer = SpanWriter(client)
    # Stored out of order, in two blocks; span 3 of trace 2 is stored twice, the later copy first.
    writer.insert(span_rows_table([_span(2, 4, 20, "d"), _span(2, 3, 30, "c, later copy"), _span(1, 1, 0, "run")]))
    writer.insert(span_rows_table([_span(2, 3, 10, "c"), _span(1, 2, 10, "b"), _span(2, 5, 20, "e")]))
    assert int(str(client.command("SELECT count() FROM spans WHERE run_id = 'run_o'"))) == 6
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))

    entries = api.get("/v1/runs/run_o/timeline").json()["entries"]
    facts = load_runs_span_facts(client, "default", locate_runs(client, "default", ["run_o"]))["run_o"]

    expected = ["run", "b", "c", "d", "e"]  # at 10 s: trace 1 before trace 2; at 20 s: span 4 before span 5
    assert [entry["name"] for entry in entries] == expected
    assert [fact.name for fact in facts] == expected
    assert [fact.start_ns for fact in facts] == [T0 + s * SECOND for s in (0, 10, 10, 20, 20)]


def test_a_redelivered_write_appears_once_as_last_received_and_writes_are_in_time_order(client: Client) -> None:
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    write = {"run_id": "run_w", "system": "jira", "ref": "JIRA-2", "action": "create", "target": "t",
             "occurred_at": "2026-11-20T10:00:05Z"}  # fmt: skip
    later = {**write, "ref": "JIRA-1", "occurred_at": "2026-11-20T10:00:09Z"}
    for body in ({**write, "title": "first delivery"}, later, {**write, "title": "redelivered"},
                 {**write, "system": "github", "ref": "PR-1"}):  # fmt: skip
        assert api.post("/v1/writes", json={"writes": [body]}).status_code == 202

    single = load_run_writes(client, "default", "run_w")
    many = load_runs_writes(client, "default", ["run_w", "run_none"])

    expected = [("github", "PR-1", ""), ("jira", "JIRA-2", "redelivered"), ("jira", "JIRA-1", "")]
    assert [(w.system, w.ref, w.title) for w in single] == expected
    assert many == {"run_w": single, "run_none": []}
