"""The timeline endpoint over a real chDB database: ordering across traces, tenant scoping, errors."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.times import rfc3339_nanos
from agentledger.schema import conventions as conv
from tests.query_api.incidents import PR_URL, PrRun, github_pull_request, ingest, jira_issue, pr_run_spans, span_id_of


def _ingest(client: Client, spans: Iterable[ReadableSpan], tenant: str = "default", normalize: bool = False) -> None:
    processors = [NormalizeProcessor()] if normalize else []
    pipeline = Pipeline(processors, [("clickhouse", ClickHouseExporter(client))])
    pipeline.consume(decode_request(encode_spans(list(spans)), Identity(tenant)).batch)


def _record(build: object) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("tests"))  # type: ignore[operator]
    return list(exporter.get_finished_spans())


@pytest.fixture
def api(client: Client) -> TestClient:
    return TestClient(create_app(client, QueryApiConfig(tenant="default")))


def test_spans_without_run_id_in_the_runs_traces_are_included_others_are_not(client: Client, api: TestClient) -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span("root", attributes={conv.AGENT_RUN_ID: "run_a"}):
            with tracer.start_as_current_span("db query"):
                pass
        with tracer.start_as_current_span("unrelated trace"):
            pass

    # Without the normaliser, which would give "db query" the run id of its trace sibling.
    _ingest(client, _record(build))

    body = api.get("/v1/runs/run_a/timeline").json()

    assert [entry["name"] for entry in body["entries"]] == ["root", "db query"]
    assert body["run"]["span_count"] == 1


def test_spans_whose_run_id_is_their_trace_id_are_included_in_the_run_of_their_trace(
    client: Client, api: TestClient
) -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span("root", attributes={conv.AGENT_RUN_ID: "run_a"}):
            with tracer.start_as_current_span("db query"):
                pass

    root, child = sorted(_record(build), key=lambda span: span.name != "root")
    # Sent apart, the child has no sibling to take the run id from: the normaliser files it under its trace.
    _ingest(client, [child], normalize=True)
    _ingest(client, [root], normalize=True)
    trace_id = f"{root.context.trace_id:032x}"

    body = api.get("/v1/runs/run_a/timeline").json()

    assert [entry["name"] for entry in body["entries"]] == ["root", "db query"]
    assert body["run"]["span_count"] == 1
    assert api.get(f"/v1/runs/{trace_id}/timeline").json()["run"]["span_count"] == 1


def test_a_replayed_batch_does_not_duplicate_timeline_entries(client: Client, api: TestClient) -> None:
    spans = _record(lambda tracer: tracer.start_span("once", attributes={conv.AGENT_RUN_ID: "run_r"}).end())

    _ingest(client, spans)
    _ingest(client, spans)

    assert [e["name"] for e in api.get("/v1/runs/run_r/timeline").json()["entries"]] == ["once"]


def test_another_tenants_run_is_not_found(client: Client, api: TestClient) -> None:
    spans = _record(lambda tracer: tracer.start_span("secret", attributes={conv.AGENT_RUN_ID: "run_t"}).end())
    _ingest(client, spans, tenant="other-tenant")

    response = api.get("/v1/runs/run_t/timeline")

    assert response.status_code == 404
    assert response.json() == {"detail": "no run with id 'run_t'"}


def test_run_id_longer_than_1024_bytes_is_422(api: TestClient) -> None:
    response = api.get("/v1/runs/" + "x" * 1025 + "/timeline")

    assert response.status_code == 422
    assert "the run id is 1025 bytes of UTF-8; at most 1024 are allowed" in response.text


def test_timeline_times_are_exact_nanoseconds(client: Client, api: TestClient) -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        span = tracer.start_span(
            "exact", attributes={conv.AGENT_RUN_ID: "run_ns"}, start_time=1_700_000_000_123_456_789
        )
        span.end(end_time=1_700_000_001_000_000_001)

    _ingest(client, _record(build))

    entry = api.get("/v1/runs/run_ns/timeline").json()["entries"][0]

    assert entry["start_unix_nano"] == 1_700_000_000_123_456_789
    assert entry["start_time"] == "2023-11-14T22:13:20.123456789Z"
    assert entry["duration_ms"] == 876.543212
    assert rfc3339_nanos(0) == "1970-01-01T00:00:00.000000000Z"


def test_healthz_and_openapi_document_the_404(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "clickhouse": "ok"}
    responses = api.get("/openapi.json").json()["paths"]["/v1/runs/{run_id}/timeline"]["get"]["responses"]
    assert set(responses) == {"200", "401", "403", "404", "422", "503"}


def _joined_run(client: Client, api: TestClient) -> list[ReadableSpan]:
    spans = pr_run_spans(PrRun("run_pr"))
    ingest(client, spans)
    assert api.post(
        "/v1/hooks/github", json=github_pull_request("run_pr"), headers={"X-GitHub-Event": "pull_request"}
    ).json() == {"accepted": 1, "ignored": 0, "detail": f"pull request {PR_URL} recorded for run run_pr"}
    assert api.post("/v1/hooks/jira", json=jira_issue("run_pr")).json() == {
        "accepted": 1,
        "ignored": 0,
        "detail": "issue OPS-17 recorded for run run_pr",
    }
    return spans


def test_spans_of_two_traces_and_github_and_jira_writes_form_one_timeline(client: Client, api: TestClient) -> None:
    spans = _joined_run(client, api)

    body = api.get("/v1/runs/run_pr/timeline").json()

    assert [(e["type"], e["name"]) for e in body["entries"]] == [
        ("run", "invoke_agent pr-agent"),
        ("retrieval", "retrieval jira"),
        ("prompt", "chat gpt-4.1"),
        ("policy_decision", "policy code.change-review"),
        ("run", "invoke_agent pr-agent"),
        ("approval", "approval create_pull_request"),
        ("tool_call", "execute_tool create_pull_request"),
        ("downstream_write", "write github"),
        ("write", f"github create {PR_URL}"),
        ("approval", "approval update_ticket"),
        ("tool_call", "execute_tool update_ticket"),
        ("write", "jira update OPS-17"),
    ]
    assert len(body["run"]["trace_ids"]) == 2
    pr_write = body["entries"][8]
    assert pr_write["start_time"] == "2026-11-20T10:01:02.500000000Z"
    assert pr_write["linked_span_id"] == span_id_of(spans, "execute_tool create_pull_request")
    assert pr_write["details"]["linked_by"] == "write_span"
    jira_write = body["entries"][11]
    assert jira_write["linked_span_id"] == span_id_of(spans, "execute_tool update_ticket")
    assert jira_write["details"]["linked_by"] == "target_time"
    assert jira_write["details"]["url"] == "https://acme.atlassian.net/browse/OPS-17"
    assert [w["tool_call"]["tool_call_id"] for w in body["writes"]] == ["call_pr_1", "call_jira_1"]
    assert body["audit"]["findings"] == []


def test_a_write_reported_with_its_tool_call_id_links_by_it(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_id_link"))
    ingest(client, spans)
    write = {
        "run_id": "run_id_link", "system": "jira", "ref": "OPS-99", "action": "comment", "target": "elsewhere",
        "occurred_at": "2026-11-20T12:00:00Z", "tool_call_id": "call_jira_1",
    }  # fmt: skip
    api.post("/v1/writes", json={"writes": [write]})

    linked = api.get("/v1/runs/run_id_link/timeline").json()["writes"][0]["tool_call"]

    assert (linked["span_id"], linked["link"]) == (span_id_of(spans, "execute_tool update_ticket"), "tool_call_id")


def test_audit_findings_are_marked_on_their_entries(client: Client, api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_marked", approve_pr=False, validated=True)))

    entries = api.get("/v1/runs/run_marked/timeline").json()["entries"]

    marked = {e["name"]: e["findings"] for e in entries if e["findings"]}
    # Every span of a finding's evidence is marked: the untrusted ticket text too (a policy allow cleared nothing).
    assert marked == {
        "retrieval jira": ["untrusted_influence"],
        "execute_tool create_pull_request": ["unconfirmed_write_call", "missing_approval", "untrusted_influence"],
        "execute_tool update_ticket": ["unconfirmed_write_call"],
    }


def test_markdown_incident_report(client: Client, api: TestClient) -> None:
    spans = _joined_run(client, api)
    api.post(
        "/v1/writes",
        json={"writes": [{"run_id": "run_pr", "system": "stripe", "ref": "re_1", "action": "transfer",
                          "target": "crm:customer/C-1", "occurred_at": "2026-11-20T10:01:10Z"}]},
    )  # fmt: skip

    response = api.get("/v1/runs/run_pr/timeline?format=md")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0] == "# Incident report: run `run_pr`"
    assert "- Autonomy level: approve_writes" in lines
    assert (
        "- **unaccounted_write** v2 (high): stripe transfer re_1 has no matching tool call in the run — write `re_1`"
        in lines
    )
    pr_call = span_id_of(spans, "execute_tool create_pull_request")
    assert (
        f"| 2026-11-20T10:01:02.500000000Z | github | create | {PR_URL} |"
        f" `create_pull_request` span `{pr_call}` (write_span) |"
    ) in lines
    assert "| 2026-11-20T10:01:10.000000000Z | stripe | transfer | re_1 | **unaccounted** |" in lines
    assert (
        "| 2026-11-20T10:01:02.000000000Z | tool_call | execute_tool create_pull_request | UNSET |"
        " tool_name: create_pull_request; tool_call_id: call_pr_1; access: write; target: github:acme/shop;"
        ' influenced_by: \\["retrieved"\\] |  |'
    ) in lines


def test_format_other_than_json_or_md_is_422(client: Client, api: TestClient) -> None:
    assert api.get("/v1/runs/x/timeline?format=pdf").status_code == 422
