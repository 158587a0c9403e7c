"""GitHub and Jira webhooks over real chDB: real payload shapes, run id discovery, signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.query_api.app import QueryApiConfig, create_app
from tests.query_api.incidents import PR_URL, REPO, github_pull_request, github_push, jira_issue

SECRET = "It's a Secret to Everybody"


def _stored(client: Client) -> list[tuple[str, ...]]:
    rows = client.query(
        "SELECT tenant, run_id, system, ref, action, target, toString(occurred_at), source, title, url, actor"
        " FROM writes ORDER BY occurred_at, ref"
    ).result_rows
    return [tuple(str(value) for value in row) for row in rows]


def _github(api: TestClient, event: str, payload: object, **headers: str) -> tuple[int, dict[str, object]]:
    response = api.post("/v1/hooks/github", content=json.dumps(payload), headers={"X-GitHub-Event": event, **headers})
    return response.status_code, response.json()


def test_pull_request_with_trailer_is_stored(client: Client, api: TestClient) -> None:
    assert _github(api, "pull_request", github_pull_request("run_1")) == (
        202, {"accepted": 1, "ignored": 0, "detail": f"pull request {PR_URL} recorded for run run_1"}
    )  # fmt: skip
    assert _stored(client) == [
        ("default", "run_1", "github", PR_URL, "create", f"github:{REPO}", "2026-11-20 10:01:02.500000000",
         "github", "Fix checkout total rounding", PR_URL, "pr-agent[bot]")
    ]  # fmt: skip


def test_merged_pull_request_is_a_merge_at_merged_at(client: Client, api: TestClient) -> None:
    _github(api, "pull_request", github_pull_request("run_1", action="closed"))

    assert [(row[4], row[6]) for row in _stored(client)] == [("merge", "2026-11-20 11:00:00.000000000")]


def test_run_id_from_a_label(client: Client, api: TestClient) -> None:
    status, body = _github(api, "pull_request", github_pull_request(None, label="agent-run-id:run_label"))

    assert (status, body["accepted"]) == (202, 1)
    assert _stored(client)[0][1] == "run_label"


def test_pull_request_without_run_id_is_acknowledged_and_not_stored(client: Client, api: TestClient) -> None:
    assert _github(api, "pull_request", github_pull_request(None)) == (
        202,
        {
            "accepted": 0,
            "ignored": 1,
            "detail": "the pull request carries no Agent-Run-Id trailer or agent-run-id label",
        },
    )  # fmt: skip
    assert _stored(client) == []


def test_push_stores_commits_with_a_trailer_and_counts_the_rest(client: Client, api: TestClient) -> None:
    status, body = _github(api, "push", github_push("run_push"))

    assert (status, body) == (
        202,
        {"accepted": 1, "ignored": 1, "detail": "1 commit(s) recorded, 1 without an Agent-Run-Id trailer"},
    )
    commit_url = f"https://github.com/{REPO}/commit/1f3c9e0c2b7d4a5e6f708192a3b4c5d6e7f80912"
    assert _stored(client) == [
        ("default", "run_push", "github", commit_url, "create", f"github:{REPO}", "2026-11-20 10:01:02.000000000",
         "github", "Fix rounding in checkout total", commit_url, "pr-agent[bot]")
    ]  # fmt: skip


def test_ping_and_other_events_store_nothing(client: Client, api: TestClient) -> None:
    assert _github(api, "ping", {"zen": "Design for failure.", "hook_id": 1}) == (
        202, {"accepted": 0, "ignored": 0, "detail": "ping received"}
    )  # fmt: skip
    assert _github(api, "issues", {"action": "opened"})[1]["detail"] == (
        "event 'issues' is not a write agentledger records (pull_request, push)"
    )
    assert _stored(client) == []


def test_form_encoded_delivery_is_read(client: Client, api: TestClient) -> None:
    response = api.post(
        "/v1/hooks/github",
        content=urlencode({"payload": json.dumps(github_pull_request("run_form"))}),
        headers={"X-GitHub-Event": "pull_request", "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("{not json", "the body is not JSON"),
        ('{"action": "opened"}', "the payload has no pull_request"),
        ('{"action": "opened", "pull_request": {"body": "Agent-Run-Id: r"}, "repository": {"full_name": "a/b"}}',
         "the payload has no pull_request.updated_at"),
    ],
)  # fmt: skip
def test_malformed_deliveries_are_400_with_the_field(api: TestClient, body: str, detail: str) -> None:
    response = api.post("/v1/hooks/github", content=body, headers={"X-GitHub-Event": "pull_request"})

    assert (response.status_code, response.json()) == (400, {"detail": detail})


def test_missing_event_header_is_422(api: TestClient) -> None:
    assert api.post("/v1/hooks/github", json={}).status_code == 422


@pytest.fixture
def signed_api(client: Client) -> TestClient:
    return TestClient(create_app(client, QueryApiConfig(github_webhook_secret=SECRET, jira_webhook_secret=SECRET)))


def _signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_with_a_secret_only_correctly_signed_deliveries_are_stored(client: Client, signed_api: TestClient) -> None:
    body = json.dumps(github_pull_request("run_signed")).encode()
    headers = {"X-GitHub-Event": "pull_request"}

    unsigned = signed_api.post("/v1/hooks/github", content=body, headers=headers)
    wrong = signed_api.post(
        "/v1/hooks/github", content=body, headers={**headers, "X-Hub-Signature-256": _signature(b"x")}
    )
    right = signed_api.post(
        "/v1/hooks/github", content=body, headers={**headers, "X-Hub-Signature-256": _signature(body)}
    )

    assert (unsigned.status_code, unsigned.json()) == (
        401, {"detail": "the X-Hub-Signature-256 signature is missing or does not match the configured secret"}
    )  # fmt: skip
    assert wrong.status_code == 401
    assert right.status_code == 202
    assert [row[1] for row in _stored(client)] == ["run_signed"]


def test_jira_signature_is_checked_too(signed_api: TestClient) -> None:
    body = json.dumps(jira_issue("run_j")).encode()

    assert signed_api.post("/v1/hooks/jira", content=body).status_code == 401
    assert (
        signed_api.post("/v1/hooks/jira", content=body, headers={"X-Hub-Signature": _signature(body)}).status_code
        == 202
    )


def test_jira_issue_with_run_id_field_is_stored(client: Client, api: TestClient) -> None:
    response = api.post("/v1/hooks/jira", json=jira_issue("run_j", event="jira:issue_created"))

    assert (response.status_code, response.json()["accepted"]) == (202, 1)
    assert _stored(client) == [
        ("default", "run_j", "jira", "OPS-17", "create", "jira:project/OPS", "2026-11-20 10:01:04.800000000",
         "jira", "Checkout total is off by one cent", "https://acme.atlassian.net/browse/OPS-17",
         "5b10ac8d82e05b22cc7d4ef5")
    ]  # fmt: skip


def test_jira_select_field_value_is_read(client: Client, api: TestClient) -> None:
    api.post("/v1/hooks/jira", json=jira_issue(None, field_value={"self": "x", "value": "run_select", "id": "1"}))

    assert _stored(client)[0][1] == "run_select"


def test_jira_without_run_id_is_ignored(client: Client, api: TestClient) -> None:
    assert api.post("/v1/hooks/jira", json=jira_issue(None)).json() == {
        "accepted": 0, "ignored": 1, "detail": "issue OPS-17 has no run id in field customfield_10100"
    }  # fmt: skip


def test_jira_field_is_configurable(client: Client) -> None:
    custom = TestClient(create_app(client, QueryApiConfig(jira_run_id_field="customfield_20000")))
    payload = jira_issue(None)
    payload["issue"]["fields"]["customfield_20000"] = "run_custom"

    assert custom.post("/v1/hooks/jira", json=payload).json()["accepted"] == 1
    assert _stored(client)[0][1] == "run_custom"


def test_jira_bad_timestamp_is_400(api: TestClient) -> None:
    payload = jira_issue("r")
    payload["timestamp"] = "yesterday"

    response = api.post("/v1/hooks/jira", json=payload)

    assert (response.status_code, response.json()) == (400, {"detail": "timestamp must be Unix milliseconds"})
