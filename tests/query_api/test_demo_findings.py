"""The demo's runs through the real pipeline into chDB: every incident produces the finding it was built
to show, with the spans that prove it, and the runs that went as they should produce none."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.demo_workflows import WORKFLOWS, DemoWorld
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.audit_config import AuditConfig
from tests.query_api.incidents import ingest

# Demo run (its incident, or "" for a clean run, in the order the demo runs them) -> expected findings.
DEMO_TABLE: list[tuple[str, dict[str, int]]] = [
    ("", {}),  # refund approved by a human
    ("", {}),  # low-risk refund
    ("", {}),  # pull request
    ("", {}),  # invoice reconciliation
    ("prompt injection", {"untrusted_influence": 3, "content_flow": 3, "target_mismatch": 3}),
    ("wrong customer id", {"target_mismatch": 1}),
    ("rejected approval", {"approval_rejected": 1}),
    ("cost spike", {"cost_anomaly": 1}),
    ("write no tool call accounts for", {"unaccounted_write": 1, "policy_violated": 1}),
    ("destructive loop", {"loop": 1}),
    ("approval for other arguments", {"approval_mismatch": 1}),
]


@pytest.fixture
def demo(client: Client, api: TestClient) -> list[tuple[str, str]]:
    """(run id, incident) of every demo run, its spans ingested and its writes reported."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agentledger-demo"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    world = DemoWorld(provider)
    for workflow in WORKFLOWS:
        workflow(world)
    ingest(client, exporter.get_finished_spans())
    response = api.post("/v1/writes", json={"writes": [write.to_json() for write in world.writes]})
    assert response.status_code == 202
    return [(run.run_id, run.incident) for run in world.runs]


def _audit(api: TestClient, run_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/runs/{run_id}/audit")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_every_demo_incident_has_its_finding_and_clean_runs_have_none(
    demo: list[tuple[str, str]], api: TestClient
) -> None:
    actual = [
        (incident, dict(Counter(f["rule"] for f in _audit(api, run_id)["findings"]))) for run_id, incident in demo
    ]

    assert actual == DEMO_TABLE


def test_findings_name_their_evidence_spans_on_the_timeline(demo: list[tuple[str, str]], api: TestClient) -> None:
    for run_id, incident in demo:
        timeline = api.get(f"/v1/runs/{run_id}/timeline").json()
        spans = {entry["span_id"]: entry for entry in timeline["entries"] if entry["span_id"]}
        for finding in timeline["audit"]["findings"]:
            assert finding["evidence"], (incident, finding)
            assert set(finding["evidence"]) <= set(spans), (incident, finding)
            # Every evidence span shows the rule on its timeline entry.
            assert all(finding["rule"] in spans[span_id]["findings"] for span_id in finding["evidence"])


def test_prompt_injection_findings_read_as_the_story(demo: list[tuple[str, str]], api: TestClient) -> None:
    run_id = dict((incident, run_id) for run_id, incident in demo)["prompt injection"]
    timeline = api.get(f"/v1/runs/{run_id}/timeline").json()
    by_id = {entry["span_id"]: entry for entry in timeline["entries"]}
    findings = timeline["audit"]["findings"]
    first = {f["rule"]: f for f in reversed(findings)}

    assert first["untrusted_influence"]["message"] == (
        "write tool call 'issue_refund' (call_refund_4415_1) wrote to crm:customer/C-66610 after untrusted input"
        " (user_provided: retrieval zendesk), and that target is neither the run's subject nor in trusted input;"
        " no human approved it; a policy allow is not a clearance"
    )
    assert first["content_flow"]["message"] == (
        "write tool call 'issue_refund' (call_refund_4415_1) used 'C-66610', '95', found in untrusted input but not"
        " in the task or trusted input"
    )
    assert first["target_mismatch"]["message"] == (
        "write tool call 'issue_refund' (call_refund_4415_1) acted on crm:customer/C-66610, but the run is about"
        " crm:customer/C-20931"
    )
    # The content flow's evidence: the refund call, then the ticket text the values came from.
    assert [by_id[span_id]["name"] for span_id in first["content_flow"]["evidence"]] == [
        "execute_tool issue_refund",
        "retrieval zendesk",
    ]
    assert {f["severity"] for f in findings} == {"high"}


def test_rejected_approval_is_in_the_chain_of_the_call_it_stopped_only(
    demo: list[tuple[str, str]], api: TestClient
) -> None:
    run_id = dict((incident, run_id) for run_id, incident in demo)["rejected approval"]
    audit = _audit(api, run_id)

    chains = {chain["tool_call_id"]: chain for chain in audit["approval_chains"]}
    assert list(chains) == ["call_refund_4413"]  # the later zendesk_reply has no decision applying to it
    stopped = chains["call_refund_4413"]
    assert (stopped["executed"], stopped["span_id"], stopped["tool_name"]) == (False, "", "issue_refund")
    assert [(d["type"], d["decision"], d["by"], d["linked_by"]) for d in stopped["decisions"]] == [
        ("policy_decision", "review", "refunds.max-amount/amount-over-100", "tool_call_id"),
        ("approval", "rejected", "user:maria.lopez", "tool_call_id"),
    ]
    assert [f["message"] for f in audit["findings"]] == [
        "user:maria.lopez rejected 'issue_refund' (call_refund_4413): Order A-1042 was already refunded on 2026-11-02"
    ]


def test_merge_is_unaccounted_and_the_merge_block_is_violated(demo: list[tuple[str, str]], api: TestClient) -> None:
    runs = dict((incident, run_id) for run_id, incident in demo)
    audit = _audit(api, runs["write no tool call accounts for"])

    assert [(f["rule"], f["severity"], f["write_ref"], f["inferred"]) for f in audit["findings"]] == [
        ("unaccounted_write", "high", "https://github.com/acme/shop/pull/515#merge", False),
        ("policy_violated", "critical", "https://github.com/acme/shop/pull/515#merge", True),
    ]
    assert audit["findings"][1]["message"] == (
        "policy github.merge-rights decided block for 'merge_pull_request', and github recorded a merge"
        " (https://github.com/acme/shop/pull/515#merge) afterwards (matched by the action's name, inferred)"
    )


def test_runs_listing_filters_on_findings(demo: list[tuple[str, str]], api: TestClient) -> None:
    incidents = dict(demo)

    def listed(**params: Any) -> list[str]:
        body = api.get("/v1/runs", params={"limit": 200, **params}).json()
        return sorted(incidents[item["run_id"]] for item in body["runs"])

    assert listed(has_violations="true") == sorted(incident for incident, expected in DEMO_TABLE if expected)
    assert listed(has_violations="false") == ["", "", "", ""]
    assert listed(rule="target_mismatch") == ["prompt injection", "wrong customer id"]
    assert listed(severity="critical") == ["write no tool call accounts for"]
    assert listed(has_violations="true", severity="medium") == sorted(
        incident for incident, expected in DEMO_TABLE if expected and incident != "rejected approval"
    )
    item = next(i for i in api.get("/v1/runs", params={"rule": "loop"}).json()["runs"])
    assert (item["findings"], item["finding_rules"], item["max_severity"]) == (1, ["loop"], "medium")
    assert api.get("/v1/runs", params={"severity": "worst"}).status_code == 422


def test_fleet_metrics_count_findings_by_rule(demo: list[tuple[str, str]], api: TestClient) -> None:
    body = api.get("/v1/metrics", params={"group_by": "workflow"}).json()
    assert body["audited_runs"] == len(DEMO_TABLE)
    by_group = {
        group["group"]: [(c["rule"], c["severity"], c["findings"], c["runs"]) for c in group["audit_findings_by_rule"]]
        for group in body["groups"]
    }

    assert by_group == {
        "code-changes": [("policy_violated", "critical", 1, 1), ("unaccounted_write", "high", 1, 1)],
        "invoice-reconciliation": [("cost_anomaly", "medium", 1, 1)],
        "support-refunds": [
            ("target_mismatch", "high", 4, 2),
            ("content_flow", "high", 3, 1),
            ("untrusted_influence", "high", 3, 1),
            ("approval_mismatch", "high", 1, 1),
            ("approval_rejected", "info", 1, 1),
        ],
        "storage-cleanup": [("loop", "medium", 1, 1)],
    }


def test_fleet_metrics_audit_at_most_the_configured_newest_runs(demo: list[tuple[str, str]], client: Client) -> None:
    capped = TestClient(create_app(client, QueryApiConfig(audit=AuditConfig(metrics_max_runs=2))))
    body = capped.get("/v1/metrics", params={"group_by": "workflow"}).json()

    # The two newest demo runs: the janitor's loop and the approval for other arguments.
    assert body["audited_runs"] == 2
    assert {g["group"]: [c["rule"] for c in g["audit_findings_by_rule"]] for g in body["groups"]} == {
        "code-changes": [], "invoice-reconciliation": [], "storage-cleanup": ["loop"],
        "support-refunds": ["approval_mismatch"],
    }  # fmt: skip


def test_the_markdown_report_lists_findings_and_approval_chains(demo: list[tuple[str, str]], api: TestClient) -> None:
    runs = dict((incident, run_id) for run_id, incident in demo)
    report = api.get(f"/v1/runs/{runs['rejected approval']}/timeline", params={"format": "md"}).text

    assert "- **approval_rejected** v1 (info): user:maria.lopez rejected 'issue_refund' (call_refund_4413)" in report
    assert "## Approval chains" in report
    assert "- `issue_refund` `call_refund_4413` (**never ran**):" in report
    injection = api.get(f"/v1/runs/{runs['prompt injection']}/timeline", params={"format": "md"}).text
    assert "all 12 checks passed" not in injection
    assert injection.count("- **target_mismatch** v1 (high): ") == 3
