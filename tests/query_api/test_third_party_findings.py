"""An agent instrumented only by OpenInference (the openai client under OpenInference's instrumentor and
OpenInference's tracer, against a local fake LLM) declares nothing about its tools: the tenant's tool catalogue
makes its refund tool a write, so the audit finds the missing approval, and a human approval clears it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from openinference.instrumentation import OITracer, TraceConfig, using_metadata, using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from tests.collector import fake_openai
from tests.collector.fake_openai import fake_openai_server
from tests.query_api.conftest import bearer

CATALOGUE = {
    "tools": [
        {"tool": "crm_*", "access": "read"},
        {
            "tool": "issue_refund",
            "access": "write",
            "target": "$.order_id",
            "target_prefix": "shop:order/",
            "amount": "$.amount",
            "requires_human_approval": True,
            "risk": "high",
        },
    ]
}


@pytest.fixture
def instrumented() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield provider, exporter
    instrumentor.uninstrument()


def _run_agent(provider: TracerProvider, openai_url: str, session_id: str, approver: str | None) -> None:
    """The app of tests/collector/third_party_app.py; with `approver`, a person approves the refund first and
    the app records it with the approval attributes (no agentledger code: plain span attributes)."""
    tracer = OITracer(provider.get_tracer("support-bot"), config=TraceConfig())
    client = openai.OpenAI(base_url=openai_url, api_key="test-key", max_retries=0)

    @tracer.tool
    def issue_refund(order_id: str, amount: float) -> str:
        return f"refunded {amount:.2f} on {order_id}"

    # The session groups the conversation; the run id comes from OpenInference's metadata (README, "Run
    # grouping"): a session id alone no longer names a run.
    with (
        using_session(session_id),
        using_metadata({"agent.run.id": session_id}),
        tracer.start_as_current_span("support-bot", openinference_span_kind="agent"),
    ):
        completion = client.chat.completions.create(
            model="gpt-4.1-mini",
            messages=[
                {"role": "system", "content": "You are a refund agent."},
                {"role": "user", "content": "Order A-1001 arrived broken."},
            ],
        )
        tool_call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        arguments = json.loads(tool_call.function.arguments)  # type: ignore[union-attr]
        if approver is not None:
            with tracer.start_as_current_span("approve issue_refund", openinference_span_kind="chain") as gate:
                gate.set_attribute("agentledger.span.type", "approval")
                gate.set_attribute("gen_ai.tool.name", "issue_refund")
                gate.set_attribute("agentledger.approval.decision", "approved")
                gate.set_attribute("agentledger.approval.approver", approver)
        issue_refund(arguments["order_id"], arguments["amount"])


def _spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    spans = list(exporter.get_finished_spans())
    exporter.clear()
    return spans


def ingest(client: Client, spans: list[ReadableSpan], tenant: str) -> None:
    """Through the collector's normaliser (run id from the metadata, OpenInference keys to typed columns)."""
    pipeline = Pipeline([NormalizeProcessor()], [("clickhouse", ClickHouseExporter(client))])
    pipeline.consume(decode_request(encode_spans(spans), Identity(tenant)).batch)


def _audit(api: TestClient, run_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/runs/{run_id}/audit", headers=bearer("al_acme_responder"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_catalogued_write_tool_of_an_openinference_agent_needs_a_human_approval(
    client: Client, keyed_api: TestClient, instrumented: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = instrumented
    with fake_openai_server() as openai_url:
        _run_agent(provider, openai_url, "session-unapproved", approver=None)
        ingest(client, _spans(exporter), tenant="acme")
        _run_agent(provider, openai_url, "session-approved", approver="user:maria.lopez")
        ingest(client, _spans(exporter), tenant="acme")

    # Without a catalogue, the tool's access is unknown: nothing to audit (the gap the catalogue closes).
    assert _audit(keyed_api, "session-unapproved")["findings"] == []

    response = keyed_api.put("/v1/admin/tool-catalogue", json=CATALOGUE, headers=bearer("al_acme_admin"))
    assert response.status_code == 200
    assert (response.json()["source"], response.json()["updated_by"]) == ("api", "acme-admin")

    unapproved = _audit(keyed_api, "session-unapproved")
    assert [(f["rule"], f["severity"], f["tool_call_id"]) for f in unapproved["findings"]] == [
        # the normaliser takes the call id from the model's tool call in the same trace
        ("unconfirmed_write_call", "medium", "call_fake_0001"),
        ("missing_approval", "high", "call_fake_0001"),
    ]
    assert unapproved["findings"][1]["message"] == (
        "write tool call 'issue_refund' (call_fake_0001) has no human approval; the tool catalogue requires one for"
        " 'issue_refund'"
    )
    timeline = keyed_api.get("/v1/runs/session-unapproved/timeline", headers=bearer("al_acme_responder")).json()
    tool = next(entry for entry in timeline["entries"] if entry["type"] == "tool_call")
    assert (tool["name"], tool["findings"]) == ("issue_refund", ["unconfirmed_write_call", "missing_approval"])
    assert json.loads(tool["details"]["arguments"]) == json.loads(fake_openai.TOOL_ARGUMENTS)

    approved = _audit(keyed_api, "session-approved")
    # No missing approval; what stays is that no downstream system reports the refund (no writes integration).
    assert [f["rule"] for f in approved["findings"]] == ["unconfirmed_write_call"]
    (chain,) = approved["approval_chains"]
    assert [(d["type"], d["decision"], d["by"], d["linked_by"]) for d in chain["decisions"]] == [
        ("approval", "approved", "user:maria.lopez", "tool_name")
    ]

    listed = keyed_api.get("/v1/runs", params={"rule": "missing_approval"}, headers=bearer("al_acme_responder")).json()
    assert [run["run_id"] for run in listed["runs"]] == ["session-unapproved"]


def test_the_tool_catalogue_admin_api_checks_roles_and_input(keyed_api: TestClient) -> None:
    assert keyed_api.get("/v1/admin/tool-catalogue", headers=bearer("al_acme_admin")).json() == {
        "tenant": "acme", "source": "none", "updated_by": "", "updated_at": "", "catalogue": {"tools": []},
    }  # fmt: skip
    for token in ("al_acme_responder", "al_acme_reviewer"):
        assert keyed_api.get("/v1/admin/tool-catalogue", headers=bearer(token)).status_code == 403
        assert keyed_api.put("/v1/admin/tool-catalogue", json=CATALOGUE, headers=bearer(token)).status_code == 403
    bad = {"tools": [{"tool": "x", "access": "write", "target": "customer.id"}]}
    response = keyed_api.put("/v1/admin/tool-catalogue", json=bad, headers=bearer("al_acme_admin"))
    assert response.status_code == 422
    assert "does not start with $" in json.dumps(response.json())
    assert keyed_api.put("/v1/admin/tool-catalogue", json=CATALOGUE, headers=bearer("al_acme_admin")).status_code == 200
    # Another tenant's admin sees its own (empty) catalogue.
    other = keyed_api.get("/v1/admin/tool-catalogue", headers=bearer("al_globex_admin")).json()
    assert (other["tenant"], other["catalogue"]) == ("globex", {"tools": []})
