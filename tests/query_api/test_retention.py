"""Retention with legal holds: a pruned run verifies as pruned by policy, a held run survives retention
and cannot be deleted, and a deletion on request verifies as deleted, not tampered."""

from __future__ import annotations

import time

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.config import ClickHouseExporterConfig, RetentionConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.query_api.app import create_app

DAY_NS = 86_400 * 1_000_000_000


def _ingest(client: Client, run_id: str, started_ns: int, retention_days: int, agent: str = "agent-x") -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for name in ("plan", "act"):
        span = tracer.start_span(name, attributes={"agent.run.id": run_id, "gen_ai.agent.id": agent},
                                 start_time=started_ns)  # fmt: skip
        span.end(end_time=started_ns + 1_000)
    batch = decode_request(encode_spans(exporter.get_finished_spans()), Identity("default")).batch
    config = ClickHouseExporterConfig(retention=RetentionConfig(tenants={"default": retention_days}))
    ClickHouseExporter(client, config).export(batch, f"test:{run_id}")


@pytest.fixture
def api(client: Client) -> TestClient:
    return TestClient(create_app(client))


def _count(client: Client, run_id: str) -> int:
    return int(client.command(f"SELECT count() FROM spans WHERE run_id = '{run_id}'"))


def test_a_run_past_retention_is_pruned_and_verifies_as_pruned_by_policy(client: Client, api: TestClient) -> None:
    _ingest(client, "run_old", time.time_ns() - 10 * DAY_NS, retention_days=1)
    client.command("OPTIMIZE TABLE spans FINAL")

    body = api.get("/v1/runs/run_old/verify").json()

    assert _count(client, "run_old") == 0
    assert body["status"] == "pruned"
    assert [f["problem"] for f in body["findings"]] == ["pruned", "pruned"]
    assert body["findings"][0]["at"].endswith("Z")


def test_a_held_run_survives_retention_and_cannot_be_deleted(client: Client, api: TestClient) -> None:
    started = time.time_ns() - DAY_NS + 2_000_000_000  # retention (1 day) ends in 2 s
    _ingest(client, "run_held", started, retention_days=1)
    hold = api.post("/v1/holds", json={"scope": "run", "target": "run_held", "reason": "matter 42"})
    assert hold.status_code == 201
    time.sleep(2.5)
    client.command("OPTIMIZE TABLE spans FINAL")

    refused = api.delete("/v1/runs/run_held", params={"reason": "cleanup"})

    assert _count(client, "run_held") == 2
    assert api.get("/v1/runs/run_held/verify").json()["status"] == "intact"
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"run 'run_held' is under legal hold {hold.json()['hold_id']}")
    assert [h["target"] for h in api.get("/v1/holds").json()] == ["run_held"]


def test_an_agent_hold_covers_spans_arriving_later_even_past_retention(client: Client, api: TestClient) -> None:
    assert api.post("/v1/holds", json={"scope": "agent", "target": "agent-h", "reason": "audit"}).status_code == 201

    _ingest(client, "run_late", time.time_ns() - 10 * DAY_NS, retention_days=1, agent="agent-h")
    client.command("OPTIMIZE TABLE spans FINAL")

    assert _count(client, "run_late") == 2


def test_releasing_a_hold_lets_retention_apply_again(client: Client, api: TestClient) -> None:
    started = time.time_ns() - DAY_NS + 2_000_000_000
    _ingest(client, "run_rel", started, retention_days=1)
    hold_id = api.post("/v1/holds", json={"scope": "run", "target": "run_rel", "reason": "x"}).json()["hold_id"]
    time.sleep(2.5)

    released = api.post(f"/v1/holds/{hold_id}/release")
    client.command("OPTIMIZE TABLE spans FINAL")

    assert released.json()["released"] is True
    assert _count(client, "run_rel") == 0
    assert api.get("/v1/holds").json() == []


def test_deletion_on_request_leaves_a_tombstone_and_verifies_as_deleted(client: Client, api: TestClient) -> None:
    _ingest(client, "run_gone", time.time_ns(), retention_days=0)

    response = api.delete("/v1/runs/run_gone", params={"reason": "GDPR erasure request 7"})
    body = api.get("/v1/runs/run_gone/verify").json()

    assert response.status_code == 200
    # The tombstone is the first link of this run in the query API's own log.
    assert (response.json()["deleted_spans"], response.json()["tombstone_seq"]) == (2, 1)
    assert _count(client, "run_gone") == 0
    assert api.get("/v1/runs/run_gone/timeline").status_code == 404
    assert body["status"] == "pruned"
    assert {f["problem"] for f in body["findings"]} == {"deleted"}
    assert body["findings"][0]["note"] == "deleted on request of anonymous: GDPR erasure request 7"


def test_deleting_spans_without_a_tombstone_is_still_tampering(client: Client, api: TestClient) -> None:
    _ingest(client, "run_sneaky", time.time_ns(), retention_days=0)
    client.command("ALTER TABLE spans DELETE WHERE run_id = 'run_sneaky'", settings={"mutations_sync": 2})

    assert api.get("/v1/runs/run_sneaky/verify").json()["status"] == "tampered"
