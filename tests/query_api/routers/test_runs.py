"""GET /v1/runs: filters over the run index and run facts, cursor pagination, has_violations."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from tests.query_api.incidents import PrRun, github_pull_request, ingest, jira_issue, pr_run_spans


@pytest.fixture
def three_runs(client: Client, api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_a")))
    ingest(client, pr_run_spans(PrRun("run_b", autonomy="autonomous")))
    ingest(client, pr_run_spans(PrRun("run_c", autonomy="suggest_only")))
    # run_a's writes are confirmed, so it is the only run without findings.
    api.post("/v1/hooks/github", json=github_pull_request("run_a"), headers={"X-GitHub-Event": "pull_request"})
    api.post("/v1/hooks/jira", json=jira_issue("run_a"))


def _ids(api: TestClient, **params: str | int) -> list[str]:
    return [run["run_id"] for run in api.get("/v1/runs", params=params).json()["runs"]]


def test_runs_newest_first_with_their_facts(three_runs: None, api: TestClient) -> None:
    body = api.get("/v1/runs").json()

    assert [run["run_id"] for run in body["runs"]] == ["run_c", "run_b", "run_a"]
    assert body["next_cursor"] is None
    assert body["runs"][2] == {
        "run_id": "run_a",
        "agent_id": "pr-agent-1",
        "agent_name": "pr-agent",
        "outcome": "success",
        "autonomy_level": "approve_writes",
        "tools": ["create_pull_request", "update_ticket"],
        "first_start": "2026-11-20T10:00:00.000000000Z",
        "last_end": "2026-11-20T10:01:10.000000000Z",
        "span_count": 10,
        "error_count": 0,
        "write_tool_calls": 2,
        "findings": None,
        "top_severity": None,
        "workflow": "",
        "writes": 2,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "duration_ms": 70000.0,
        "finding_rules": None,
        "max_severity": None,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"autonomy_level": "autonomous"}, ["run_b"]),
        ({"tool": "update_ticket"}, ["run_c", "run_b", "run_a"]),
        ({"tool": "delete_repo"}, []),
        ({"agent": "pr-agent"}, ["run_c", "run_b", "run_a"]),
        ({"agent": "pr-agent-1", "autonomy_level": "suggest_only"}, ["run_c"]),
        ({"agent": "refund-agent"}, []),
        ({"outcome": "success"}, ["run_c", "run_b", "run_a"]),
        ({"outcome": "failure"}, []),
        ({"since": "2026-11-20T10:00:00Z"}, ["run_c", "run_b", "run_a"]),
        ({"since": "2026-11-20T10:00:00.000000001Z"}, []),
        ({"until": "2026-11-20T09:59:59.999999999Z"}, []),
        ({"has_violations": "true"}, ["run_c", "run_b"]),
        ({"has_violations": "false"}, ["run_a"]),
    ],
)
def test_filters(three_runs: None, api: TestClient, params: dict[str, str], expected: list[str]) -> None:
    assert _ids(api, **params) == expected


def test_has_violations_reports_the_finding_counts(three_runs: None, api: TestClient) -> None:
    runs = api.get("/v1/runs", params={"has_violations": "true"}).json()["runs"]

    # run_c (suggest_only): two calls each unconfirmed and unapproved; run_b (autonomous): unconfirmed only,
    # the approvals it got anyway validate the untrusted input.
    assert [(run["run_id"], run["findings"]) for run in runs] == [("run_c", 4), ("run_b", 2)]


def test_cursor_pages_through_every_run_once(three_runs: None, api: TestClient) -> None:
    first = api.get("/v1/runs", params={"limit": 2}).json()
    second = api.get("/v1/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()

    assert [run["run_id"] for run in first["runs"]] == ["run_c", "run_b"]
    assert [run["run_id"] for run in second["runs"]] == ["run_a"]
    assert second["next_cursor"] is None


def test_has_violations_pages_too(three_runs: None, api: TestClient) -> None:
    first = api.get("/v1/runs", params={"limit": 1, "has_violations": "true"}).json()
    second = api.get("/v1/runs", params={"limit": 1, "has_violations": "true", "cursor": first["next_cursor"]}).json()

    assert [r["run_id"] for r in first["runs"] + second["runs"]] == ["run_c", "run_b"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"cursor": "!!!"}, "cursor is not one this API returned"),
        (
            {"since": "yesterday"},
            "since: 'yesterday' is not an RFC 3339 time with an offset, e.g. 2026-11-25T04:00:00Z",
        ),
    ],
)
def test_bad_cursor_or_time_is_400(api: TestClient, params: dict[str, str], detail: str) -> None:
    response = api.get("/v1/runs", params=params)

    assert (response.status_code, response.json()) == (400, {"detail": detail})


def test_limit_is_bounded(api: TestClient) -> None:
    assert api.get("/v1/runs", params={"limit": 0}).status_code == 422
    assert api.get("/v1/runs", params={"limit": 201}).status_code == 422
