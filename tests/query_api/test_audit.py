"""Audit checks on crafted runs: each finding appears for the run built to cause it, and not for a clean one."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.query_api.rules import BUILTIN_RULE_IDS, BUILTIN_RULES
from tests.query_api.incidents import (
    PrRun,
    github_pull_request,
    ingest,
    jira_issue,
    pr_run_spans,
    span_id_of,
)


def _deliver(api: TestClient, run_id: str, *, pull_request: bool = True, ticket: bool = True) -> None:
    if pull_request:
        response = api.post(
            "/v1/hooks/github", json=github_pull_request(run_id), headers={"X-GitHub-Event": "pull_request"}
        )
        assert response.json()["accepted"] == 1
    if ticket:
        assert api.post("/v1/hooks/jira", json=jira_issue(run_id)).json()["accepted"] == 1


def _findings(api: TestClient, run_id: str) -> list[tuple[str, str, str]]:
    body: dict[str, Any] = api.get(f"/v1/runs/{run_id}/audit").json()
    return [(f["check"], f["tool_call_id"], f["write_ref"]) for f in body["findings"]]


def test_clean_run_has_no_findings(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_clean"))
    ingest(client, spans)
    _deliver(api, "run_clean")

    body = api.get("/v1/runs/run_clean/audit").json()

    assert (body["run_id"], body["autonomy_level"], body["findings"]) == ("run_clean", "approve_writes", [])
    assert body["checks"] == list(BUILTIN_RULE_IDS)
    assert [(r["id"], r["severity"], r["version"], r["origin"]) for r in body["rules"]] == [
        (rule.id, rule.severity, rule.version, "builtin") for rule in BUILTIN_RULES
    ]
    # Each call's chain holds only the decisions that apply to it: the review policy (inferred: it precedes the
    # PR's approval) and the PR's approval on the PR; the ticket's approval on the ticket update.
    assert [
        (
            chain["tool_call_id"],
            chain["executed"],
            [(d["type"], d["decision"], d["linked_by"]) for d in chain["decisions"]],
        )
        for chain in body["approval_chains"]
    ] == [
        ("call_pr_1", True, [("policy_decision", "review", "inferred"), ("approval", "approved", "tool_call_id")]),
        ("call_jira_1", True, [("approval", "approved", "tool_call_id")]),
    ]


def test_write_no_tool_call_accounts_for_is_unaccounted(client: Client, api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_extra")))
    _deliver(api, "run_extra")
    extra = {
        "run_id": "run_extra", "system": "salesforce", "ref": "sf:case/500XX01", "action": "update",
        "target": "crm:customer/C-1", "occurred_at": "2026-11-20T10:01:30Z",
    }  # fmt: skip
    assert api.post("/v1/writes", json={"writes": [extra]}).status_code == 202

    assert _findings(api, "run_extra") == [("unaccounted_write", "", "sf:case/500XX01")]


def test_write_call_without_a_confirming_write_is_unconfirmed(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_unconfirmed"))
    ingest(client, spans)
    _deliver(api, "run_unconfirmed", ticket=False)

    body = api.get("/v1/runs/run_unconfirmed/audit").json()

    assert [(f["check"], f["span_id"], f["severity"]) for f in body["findings"]] == [
        ("unconfirmed_write_call", span_id_of(spans, "execute_tool update_ticket"), "medium")
    ]
    assert body["findings"][0]["message"] == (
        "write tool call 'update_ticket' (call_jira_1) has no downstream write confirming it"
    )


def test_write_call_without_the_required_approval_is_found(client: Client, api: TestClient) -> None:
    # The PR call is unapproved; a validation policy allowed the plan after the untrusted ticket text, but an
    # automated allow is no clearance: the untrusted influence stays.
    ingest(client, pr_run_spans(PrRun("run_unapproved", approve_pr=False, validated=True)))
    _deliver(api, "run_unapproved")

    body = api.get("/v1/runs/run_unapproved/audit").json()

    assert [(f["rule"], f["tool_call_id"], f["severity"]) for f in body["findings"]] == [
        ("missing_approval", "call_pr_1", "high"),
        ("untrusted_influence", "call_pr_1", "high"),
    ]
    assert body["findings"][0]["message"] == (
        "write tool call 'create_pull_request' (call_pr_1) has no human approval; autonomy level approve_writes"
        " requires one"
    )


def test_suggest_only_run_may_not_write_at_all(client: Client, api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_suggest", autonomy="suggest_only")))
    _deliver(api, "run_suggest")

    assert _findings(api, "run_suggest") == [
        ("missing_approval", "call_pr_1", ""),
        ("missing_approval", "call_jira_1", ""),
    ]


def test_approve_high_risk_needs_approval_only_for_the_call_a_review_policy_applies_to(
    client: Client, api: TestClient
) -> None:
    # The review policy precedes the PR's approval, so it applies to the PR (approved), not to the later ticket
    # update: that one needs no approval, but the untrusted ticket text shaped it and nobody cleared it.
    ingest(
        client, pr_run_spans(PrRun("run_high_risk", autonomy="approve_high_risk", approve_ticket=False, validated=True))
    )
    _deliver(api, "run_high_risk")

    assert _findings(api, "run_high_risk") == [("untrusted_influence", "call_jira_1", "")]


def test_untrusted_input_reaching_a_write_without_validation_is_found(client: Client, api: TestClient) -> None:
    # Autonomous: no approval is required, so only the prompt-injection rule can fire.
    spans = pr_run_spans(PrRun("run_injected", autonomy="autonomous", approve_pr=False, approve_ticket=False))
    ingest(client, spans)
    _deliver(api, "run_injected")

    body = api.get("/v1/runs/run_injected/audit").json()

    assert [(f["check"], f["tool_call_id"]) for f in body["findings"]] == [
        ("untrusted_influence", "call_pr_1"),
        ("untrusted_influence", "call_jira_1"),
    ]
    retrieval = span_id_of(spans, "retrieval jira")
    assert [(f["span_id"], f["evidence"]) for f in body["findings"]] == [
        (
            span_id_of(spans, "execute_tool create_pull_request"),
            [span_id_of(spans, "execute_tool create_pull_request"), retrieval],
        ),
        (span_id_of(spans, "execute_tool update_ticket"), [span_id_of(spans, "execute_tool update_ticket"), retrieval]),
    ]
    assert body["findings"][0]["message"] == (
        "write tool call 'create_pull_request' (call_pr_1) wrote to github:acme/shop after untrusted input"
        " (retrieved: retrieval jira), and that target is neither the run's subject nor in trusted input;"
        " no human approved it"
    )


def test_a_policy_allow_after_the_untrusted_input_is_no_clearance(client: Client, api: TestClient) -> None:
    run = PrRun("run_guarded", autonomy="autonomous", approve_pr=False, approve_ticket=False, validated=True)
    ingest(client, pr_run_spans(run))
    _deliver(api, "run_guarded")

    body = api.get("/v1/runs/run_guarded/audit").json()

    assert _findings(api, "run_guarded") == [
        ("untrusted_influence", "call_pr_1", ""),
        ("untrusted_influence", "call_jira_1", ""),
    ]
    assert body["findings"][0]["message"].endswith("no human approved it; a policy allow is not a clearance")


def test_unknown_run_audit_is_404(api: TestClient) -> None:
    response = api.get("/v1/runs/nope/audit")

    assert (response.status_code, response.json()) == (404, {"detail": "no run with id 'nope'"})
