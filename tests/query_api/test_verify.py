"""Audit integrity: spans altered, removed or inserted directly in ClickHouse (bypassing the collector)
are each named by verification; an untouched run verifies intact."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import create_app
from agentledger.schema import conventions as conv
from tests.conftest import direct_pipeline

SYNC = {"mutations_sync": 2}


def _spans(run_id: str, names: list[str]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for name in names:
        tracer.start_span(name, attributes={conv.AGENT_RUN_ID: run_id, "note": f"about {name}"}).end()
    return list(exporter.get_finished_spans())


@pytest.fixture
def chained_run(client: Client) -> dict[str, str]:
    """A run ingested in two batches (two chain links); returns span ids by name."""
    pipeline = direct_pipeline(client)
    first, second = _spans("run_v", ["plan", "read"]), _spans("run_v", ["write", "report"])
    for spans in (first, second):
        pipeline.consume(decode_request(encode_spans(spans), Identity("default")).batch)
    return {span.name: format(span.context.span_id, "016x") for span in first + second}


def _verify(client: Client) -> dict[str, object]:
    response = TestClient(create_app(client)).get("/v1/runs/run_v/verify")
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_an_untouched_run_verifies_intact(client: Client, chained_run: dict[str, str]) -> None:
    body = _verify(client)

    assert (body["status"], body["links"], body["spans_checked"]) == ("intact", 2, 4)
    assert body["findings"] == [] and body["chain_breaks"] == [] and body["first_bad_link"] is None
    assert str(body["head"]).startswith("sha256:")


def test_altered_removed_and_inserted_spans_are_each_named(client: Client, chained_run: dict[str, str]) -> None:
    client.command(f"ALTER TABLE spans UPDATE name = 'tidy' WHERE span_id = '{chained_run['write']}'", settings=SYNC)
    client.command(f"ALTER TABLE spans DELETE WHERE span_id = '{chained_run['read']}'", settings=SYNC)
    forged = _spans("run_v", ["forged"])
    SpanWriter(client).insert(decode_request(encode_spans(forged), Identity("default")).batch)
    forged_id = format(forged[0].context.span_id, "016x")

    body = _verify(client)

    findings = {(f["span_id"], f["problem"], f["link_seq"]) for f in body["findings"]}  # type: ignore[attr-defined]
    assert body["status"] == "tampered"
    assert findings == {
        (chained_run["read"], "removed", 1),
        (chained_run["write"], "altered", 2),
        (forged_id, "inserted", None),
    }
    assert body["first_bad_link"] == 1
    assert body["chain_breaks"] == []


def test_an_edited_chain_link_is_a_break(client: Client, chained_run: dict[str, str]) -> None:
    client.command("ALTER TABLE audit_chain UPDATE batch_time_ns = batch_time_ns + 1 WHERE seq = 2", settings=SYNC)

    body = _verify(client)

    assert body["status"] == "tampered"
    assert [(b["finding"], b["seq"], b["problem"]) for b in body["chain_breaks"]] == [  # type: ignore[attr-defined]
        ("altered_link", 2, "its hash does not match its contents (kind, note, entries or position changed)")
    ]


def test_replayed_batches_add_no_links(client: Client) -> None:
    from agentledger.collector.exporters.clickhouse import ClickHouseExporter

    batch = decode_request(encode_spans(_spans("run_v", ["once"])), Identity("default")).batch
    exporter = ClickHouseExporter(client)
    exporter.export(batch, "clickhouse:1:0-1:99")
    exporter.export(batch, "clickhouse:1:0-1:99")  # the same planned batch after a crash

    body = _verify(client)

    assert (body["status"], body["links"]) == ("intact", 1)


def test_unknown_run_is_404(client: Client) -> None:
    response = TestClient(create_app(client)).get("/v1/runs/run_missing/verify")

    assert response.status_code == 404


def test_the_timeline_and_its_report_carry_the_verification(client: Client, chained_run: dict[str, str]) -> None:
    client.command(f"ALTER TABLE spans DELETE WHERE span_id = '{chained_run['read']}'", settings=SYNC)
    api = TestClient(create_app(client))

    plain = api.get("/v1/runs/run_v/timeline").json()
    verified = api.get("/v1/runs/run_v/timeline", params={"verify": "true"}).json()
    report = api.get("/v1/runs/run_v/timeline", params={"format": "md"}).text

    assert plain["integrity"] is None
    assert verified["integrity"]["status"] == "tampered"
    assert "## Record integrity" in report
    assert f"- span `{chained_run['read']}` removed (link 1)" in report
