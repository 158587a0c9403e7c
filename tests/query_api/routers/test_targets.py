"""GET /v1/targets/{resource}: every span and write that names a target, newest first."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from tests.query_api.incidents import PR_URL, PrRun, github_pull_request, ingest, pr_run_spans, span_id_of


def test_target_lists_tool_calls_write_spans_and_writes(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_pr"))
    ingest(client, spans)
    ingest(client, pr_run_spans(PrRun("run_other", pr_call_at=(66.0, 67.0))))
    api.post("/v1/hooks/github", json=github_pull_request("run_pr"), headers={"X-GitHub-Event": "pull_request"})

    body = api.get("/v1/targets/github:acme/shop").json()

    assert body["target"] == "github:acme/shop"
    assert [(t["run_id"], t["kind"], t["name"], t["time"]) for t in body["touches"]] == [
        ("run_other", "span", "write github", "2026-11-20T10:01:06.200000000Z"),
        ("run_other", "span", "execute_tool create_pull_request", "2026-11-20T10:01:06.000000000Z"),
        ("run_pr", "write", "github create", "2026-11-20T10:01:02.500000000Z"),
        ("run_pr", "span", "write github", "2026-11-20T10:01:02.200000000Z"),
        ("run_pr", "span", "execute_tool create_pull_request", "2026-11-20T10:01:02.000000000Z"),
    ]
    assert body["touches"][2]["write_ref"] == PR_URL
    assert body["touches"][4]["span_id"] == span_id_of(spans, "execute_tool create_pull_request")
    assert body["touches"][4]["tool_call_id"] == "call_pr_1"


def test_limit_and_unknown_target(client: Client, api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_pr")))

    assert len(api.get("/v1/targets/github:acme/shop", params={"limit": 2}).json()["touches"]) == 2
    assert api.get("/v1/targets/crm:customer/none").json() == {"target": "crm:customer/none", "touches": []}
