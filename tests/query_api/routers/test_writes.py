"""POST /v1/writes (the generic contract) and the reverse lookup GET /v1/writes?ref=."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from tests.query_api.incidents import PR_URL, PrRun, github_pull_request, ingest, pr_run_spans, span_id_of

WRITE = {
    "run_id": "run_w",
    "system": "salesforce",
    "ref": "sf:case/500XX01",
    "action": "update",
    "target": "crm:customer/C-88123",
    "occurred_at": "2026-11-20T10:01:02.123456789+01:00",
}


def test_writes_are_accepted_and_stored_exactly(client: Client, api: TestClient) -> None:
    full = {
        **WRITE,
        "tool_call_id": "call_1",
        "title": "Case closed",
        "url": "https://sf.example/500XX01",
        "actor": "bot",
    }

    response = api.post("/v1/writes", json={"writes": [full, {**WRITE, "ref": "sf:case/2"}]})

    assert (response.status_code, response.json()) == (202, {"accepted": 2})
    rows = client.query(
        "SELECT tenant, run_id, system, ref, action, target, toUnixTimestamp64Nano(occurred_at), tool_call_id,"
        " source, title, url, actor FROM writes ORDER BY ref"
    ).result_rows
    assert rows == [
        ("default", "run_w", "salesforce", "sf:case/2", "update", "crm:customer/C-88123", 1795165262123456789,
         "", "api", "", "", ""),
        ("default", "run_w", "salesforce", "sf:case/500XX01", "update", "crm:customer/C-88123", 1795165262123456789,
         "call_1", "api", "Case closed", "https://sf.example/500XX01", "bot"),
    ]  # fmt: skip


def test_a_write_without_run_id_is_refused(api: TestClient) -> None:
    without = {key: value for key, value in WRITE.items() if key != "run_id"}

    response = api.post("/v1/writes", json={"writes": [without]})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "writes", 0, "run_id"]


def test_a_time_without_offset_is_refused_with_a_sentence(api: TestClient) -> None:
    response = api.post("/v1/writes", json={"writes": [{**WRITE, "occurred_at": "2026-11-20 10:00"}]})

    assert response.status_code == 422
    assert "'2026-11-20 10:00' is not an RFC 3339 time with an offset" in response.json()["detail"][0]["msg"]


def test_reverse_lookup_from_the_pr_url_finds_the_run_and_the_tool_call(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_pr"))
    ingest(client, spans)
    api.post("/v1/hooks/github", json=github_pull_request("run_pr"), headers={"X-GitHub-Event": "pull_request"})

    body = api.get("/v1/writes", params={"ref": PR_URL}).json()

    assert body["ref"] == PR_URL
    assert [(m["write"]["run_id"], m["write"]["source"]) for m in body["matches"]] == [("run_pr", "github")]
    assert body["matches"][0]["tool_call"] == {
        "trace_id": body["matches"][0]["tool_call"]["trace_id"],
        "span_id": span_id_of(spans, "execute_tool create_pull_request"),
        "name": "execute_tool create_pull_request",
        "tool_name": "create_pull_request",
        "tool_call_id": "call_pr_1",
        "start_time": "2026-11-20T10:01:02.000000000Z",
        "link": "write_span",
        "inferred": False,
    }


def test_reverse_lookup_of_a_ref_only_the_agent_logged(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_unconfirmed"))
    ingest(client, spans)

    matches = api.get("/v1/writes", params={"ref": PR_URL}).json()["matches"]

    assert [(m["write"]["source"], m["write"]["system"], m["tool_call"]["span_id"]) for m in matches] == [
        ("span", "github", span_id_of(spans, "execute_tool create_pull_request"))
    ]


def test_reverse_lookup_of_an_unknown_ref_is_empty(api: TestClient) -> None:
    assert api.get("/v1/writes", params={"ref": "nothing"}).json() == {"ref": "nothing", "matches": []}
    assert api.get("/v1/writes").status_code == 422


def test_reverse_lookup_of_a_ref_written_by_several_runs_and_redelivered(client: Client, api: TestClient) -> None:
    runs = {run_id: pr_run_spans(PrRun(run_id)) for run_id in ("run_b", "run_a")}
    for spans in runs.values():
        ingest(client, spans)
    for run_id in ("run_b", "run_a", "run_b"):  # run_b's webhook delivered twice
        delivered = api.post(
            "/v1/hooks/github", json=github_pull_request(run_id), headers={"X-GitHub-Event": "pull_request"}
        )
        assert delivered.status_code == 202, delivered.text

    matches = api.get("/v1/writes", params={"ref": PR_URL}).json()["matches"]

    # Same time: by run id; each run's write once, linked to its own tool call.
    assert [(m["write"]["run_id"], m["write"]["source"], m["tool_call"]["span_id"]) for m in matches] == [
        (run_id, "github", span_id_of(runs[run_id], "execute_tool create_pull_request"))
        for run_id in ("run_a", "run_b")
    ]


def test_reverse_lookup_of_a_replayed_run_shows_each_write_once(client: Client, api: TestClient) -> None:
    spans = pr_run_spans(PrRun("run_replayed"))
    ingest(client, spans)
    # A replay that reached storage (the collector itself drops the spans it already stored): every span of
    # the run stored twice, as until merges collapse the copies.
    client.command("INSERT INTO spans SELECT * FROM spans WHERE run_id = 'run_replayed'")
    copies = client.query("SELECT count() FROM spans WHERE run_id = 'run_replayed'").result_rows[0][0]
    assert copies == 2 * len(spans)

    matches = api.get("/v1/writes", params={"ref": PR_URL}).json()["matches"]

    assert [(m["write"]["source"], m["tool_call"]["span_id"]) for m in matches] == [
        ("span", span_id_of(spans, "execute_tool create_pull_request"))
    ]
