"""API keys: every endpoint refuses a missing or unknown key, keeps tenants apart, and checks roles."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from tests.query_api.conftest import bearer
from tests.query_api.incidents import PR_URL, PrRun, github_pull_request, ingest, jira_issue, pr_run_spans, span_id_of

WRITE = {
    "run_id": "run_pr", "system": "x", "ref": "r1", "action": "create", "target": "t",
    "occurred_at": "2026-11-20T10:00:00Z",
}  # fmt: skip

# (method, path, body, role needed) for every route that takes a key.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/runs", None, "responder"),
    ("GET", "/v1/runs/run_pr/timeline", None, "responder"),
    ("GET", "/v1/runs/run_pr/timeline?format=md", None, "responder"),
    ("GET", "/v1/runs/run_pr/audit", None, "responder"),
    ("GET", "/v1/runs/run_pr/annotations", None, "responder"),
    ("POST", "/v1/runs/run_pr/annotations", {"span_id": "SPAN", "name": "root_cause"}, "reviewer"),
    ("GET", f"/v1/writes?ref={PR_URL}", None, "responder"),
    ("POST", "/v1/writes", {"writes": [WRITE]}, "admin"),
    ("GET", "/v1/targets/github:acme/shop", None, "responder"),
    ("POST", "/v1/hooks/github", github_pull_request("run_pr"), "admin"),
    ("POST", "/v1/hooks/jira", jira_issue("run_pr"), "admin"),
]
TOKENS = {"responder": "al_acme_responder", "reviewer": "al_acme_reviewer", "admin": "al_acme_admin"}


@pytest.fixture
def acme_run(client: Client) -> str:
    """A run stored for tenant acme; returns the span id annotations name."""
    spans = pr_run_spans(PrRun("run_pr"))
    ingest(client, spans, tenant="acme")
    return span_id_of(spans, "execute_tool create_pull_request")


def _call(
    api: TestClient, method: str, path: str, body: dict[str, Any] | None, span: str, token: str | None
) -> httpx.Response:
    headers = {"X-GitHub-Event": "pull_request", **(bearer(token) if token else {})}
    if body is not None and "span_id" in body:
        body = {**body, "span_id": span}
    return api.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body", "role"), ENDPOINTS)
def test_no_key_and_unknown_key_are_401(keyed_api: TestClient, acme_run: str, method: str, path: str,
                                        body: dict[str, Any] | None, role: str) -> None:  # fmt: skip
    missing = _call(keyed_api, method, path, body, acme_run, None)
    unknown = _call(keyed_api, method, path, body, acme_run, "al_not_a_key")

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert unknown.status_code == 401
    if "/hooks/" not in path:
        assert missing.json() == {"detail": "this API needs an API key: send `Authorization: Bearer <key>`"}
        assert unknown.json() == {"detail": "the API key is not valid"}


@pytest.mark.parametrize(("method", "path", "body", "role"), ENDPOINTS)
def test_each_role_gets_exactly_what_it_may(keyed_api: TestClient, acme_run: str, method: str, path: str,
                                            body: dict[str, Any] | None, role: str) -> None:  # fmt: skip
    order = ["responder", "reviewer", "admin"]
    for held in order:
        response = _call(keyed_api, method, path, body, acme_run, TOKENS[held])
        if order.index(held) < order.index(role):
            assert response.status_code == 403, (held, response.text)
            assert response.json() == {"detail": f"API key 'acme-{held}' has role {held}; this needs {role} or above"}
        else:
            assert response.status_code in (200, 201, 202), (held, response.text)


def test_another_tenants_key_sees_nothing(client: Client, keyed_api: TestClient, acme_run: str) -> None:
    keyed_api.post("/v1/writes", json={"writes": [{**WRITE, "ref": PR_URL}]}, headers=bearer("al_acme_admin"))
    keyed_api.post(
        "/v1/runs/run_pr/annotations", json={"span_id": acme_run, "name": "root_cause"},
        headers=bearer("al_acme_reviewer"),
    )  # fmt: skip
    globex = bearer("al_globex_admin")

    assert keyed_api.get("/v1/runs", headers=globex).json() == {"runs": [], "next_cursor": None}
    assert keyed_api.get("/v1/runs/run_pr/timeline", headers=globex).status_code == 404
    assert keyed_api.get("/v1/runs/run_pr/timeline?format=md", headers=globex).status_code == 404
    assert keyed_api.get("/v1/runs/run_pr/audit", headers=globex).status_code == 404
    assert keyed_api.get("/v1/runs/run_pr/annotations", headers=globex).json() == []
    assert (
        keyed_api.post(
            "/v1/runs/run_pr/annotations", json={"span_id": acme_run, "name": "x"}, headers=globex
        ).status_code
        == 404
    )
    assert keyed_api.get("/v1/writes", params={"ref": PR_URL}, headers=globex).json()["matches"] == []
    assert keyed_api.get("/v1/targets/github:acme/shop", headers=globex).json()["touches"] == []
    # ... while acme's own keys see all of it.
    acme = bearer("al_acme_responder")
    assert [r["run_id"] for r in keyed_api.get("/v1/runs", headers=acme).json()["runs"]] == ["run_pr"]
    assert len(keyed_api.get("/v1/writes", params={"ref": PR_URL}, headers=acme).json()["matches"]) == 1
    assert len(keyed_api.get("/v1/runs/run_pr/annotations", headers=acme).json()) == 1


def test_writes_posted_with_a_key_land_in_its_tenant(client: Client, keyed_api: TestClient) -> None:
    keyed_api.post("/v1/writes", json={"writes": [WRITE]}, headers=bearer("al_globex_admin"))
    keyed_api.post("/v1/hooks/jira", json=jira_issue("run_j"), headers=bearer("al_acme_admin"))

    assert sorted(client.query("SELECT tenant, run_id FROM writes").result_rows) == [
        ("acme", "run_j"),
        ("globex", "run_pr"),
    ]


def test_healthz_and_ui_need_no_key(keyed_api: TestClient) -> None:
    assert keyed_api.get("/healthz").status_code == 200
    assert keyed_api.get("/ui").status_code == 200


def test_open_api_without_keys_serves_its_tenant_only(client: Client, api: TestClient) -> None:
    ingest(client, pr_run_spans(PrRun("run_pr")), tenant="acme")

    assert api.get("/v1/runs/run_pr/timeline").status_code == 404
    assert api.get("/v1/runs").json()["runs"] == []


def test_annotations_are_stored_and_listed(client: Client, keyed_api: TestClient, acme_run: str) -> None:
    created = keyed_api.post(
        "/v1/runs/run_pr/annotations",
        json={"span_id": acme_run, "name": "root_cause", "label": "prompt injection", "score": 1.0,
              "explanation": "ticket text told the agent to skip review"},
        headers=bearer("al_acme_reviewer"),
    )  # fmt: skip

    assert created.status_code == 201
    listed = keyed_api.get("/v1/runs/run_pr/annotations", headers=bearer("al_acme_responder")).json()
    assert [(a["span_id"], a["name"], a["label"], a["score"], a["annotator"]) for a in listed] == [
        (acme_run, "root_cause", "prompt injection", 1.0, "acme-reviewer")
    ]
    assert listed[0]["annotation_id"] == created.json()["annotation_id"]
    assert listed[0]["created_at"] == created.json()["created_at"]


def test_annotating_a_span_outside_the_run_is_404(keyed_api: TestClient, acme_run: str) -> None:
    response = keyed_api.post(
        "/v1/runs/run_pr/annotations", json={"span_id": "0000000000000000", "name": "x"},
        headers=bearer("al_acme_admin"),
    )  # fmt: skip

    assert (response.status_code, response.json()) == (404, {"detail": "run 'run_pr' has no span '0000000000000000'"})
