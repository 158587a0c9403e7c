"""DELETE /v1/runs/{run_id} removes every row derived from the run's spans (run index, run facts, span
references, annotations), keeps the downstream systems' own records of writes without exposing the
deleted spans through them, and is still refused under a legal hold."""

from __future__ import annotations

from typing import Final

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from tests.query_api.incidents import PR_URL, PrRun, github_pull_request, ingest, pr_run_spans, span_id_of

# Tables holding run ids that a deletion keeps, and why. Any other table with a run_id column must be
# emptied of the run by a deletion: a new derived table fails this test until its deletion is written.
KEPT: Final = {
    "audit_chain": "append-only record; the deletion adds a tombstone to it",
    "writes": "downstream systems' own records of what was written (webhooks, imports, the API)",
    "refs": "rows from writes (source 'write') stay; rows from spans go",
}


def _run_tables(client: Client) -> list[str]:
    return sorted(
        str(row[0])
        for row in client.query(
            "SELECT DISTINCT table FROM system.columns c INNER JOIN system.tables t"
            " ON t.database = c.database AND t.name = c.table"
            " WHERE c.database = currentDatabase() AND c.name = 'run_id'"
            " AND t.engine NOT IN ('MaterializedView', 'View')"
        ).result_rows
    )


def _rows_of_run(client: Client, table: str, run_id: str) -> int:
    return int(
        client.command(f"SELECT count() FROM {table} WHERE run_id = {{run_id:String}}", parameters={"run_id": run_id})
    )


def _seed(client: Client, api: TestClient) -> list[str]:
    spans = pr_run_spans(PrRun("run_gone"))
    ingest(client, spans)
    ingest(client, pr_run_spans(PrRun("run_kept", pr_call_at=(66.0, 67.0))))
    delivered = api.post(
        "/v1/hooks/github", json=github_pull_request("run_gone"), headers={"X-GitHub-Event": "pull_request"}
    )
    assert delivered.status_code == 202
    call = span_id_of(spans, "execute_tool create_pull_request")
    annotated = api.post("/v1/runs/run_gone/annotations", json={"span_id": call, "name": "root_cause", "label": "x"})
    assert annotated.status_code == 201
    return [format(s.context.span_id, "016x") for s in spans]


def test_deleting_a_run_removes_every_row_derived_from_its_spans(client: Client, api: TestClient) -> None:
    span_ids = _seed(client, api)
    tables = _run_tables(client)
    before = {table: _rows_of_run(client, table, "run_gone") for table in tables}

    deleted = api.delete("/v1/runs/run_gone", params={"reason": "erasure request 9"})

    assert deleted.status_code == 200
    assert deleted.json()["deleted_spans"] == len(span_ids)
    after = {table: _rows_of_run(client, table, "run_gone") for table in tables}
    emptied = {table for table in tables if table not in KEPT}
    derived = {"annotations", "run_facts", "runs", "spans"}
    assert {table: before[table] > 0 for table in derived} == dict.fromkeys(derived, True)  # they held the run
    assert {table: after[table] for table in emptied} == dict.fromkeys(emptied, 0)
    assert after["writes"] == before["writes"] == 1
    assert int(client.command("SELECT count() FROM refs WHERE run_id = 'run_gone' AND source = 'span'")) == 0
    assert _rows_of_run(client, "runs", "run_kept") > 0  # the other run is untouched


def test_a_deleted_runs_spans_are_no_longer_readable_through_any_endpoint(client: Client, api: TestClient) -> None:
    span_ids = _seed(client, api)

    assert api.delete("/v1/runs/run_gone", params={"reason": "erasure request 9"}).status_code == 200

    target = api.get("/v1/targets/github:acme/shop").json()
    assert [(t["run_id"], t["kind"], t["name"], t["span_id"]) for t in target["touches"]] == [
        ("run_kept", "span", "write github", target["touches"][0]["span_id"]),
        ("run_kept", "span", "execute_tool create_pull_request", target["touches"][1]["span_id"]),
        ("run_gone", "write", "github create", ""),
    ]
    lookup = api.get("/v1/writes", params={"ref": PR_URL}).json()
    gone = [m for m in lookup["matches"] if m["write"]["run_id"] == "run_gone"]
    assert [(m["write"]["source"], m["write"]["system"], m["tool_call"]) for m in gone] == [("github", "github", None)]
    assert [r["run_id"] for r in api.get("/v1/runs").json()["runs"]] == ["run_kept"]
    assert api.get("/v1/runs", params={"tool": "create_pull_request"}).json()["runs"][0]["run_id"] == "run_kept"
    assert api.get("/v1/runs/run_gone/annotations").json() == []
    assert api.get("/v1/runs/run_gone/timeline").status_code == 404
    assert api.get("/v1/runs/run_gone/audit").status_code == 404
    listed = api.get("/v1/targets/jira:project/OPS").json()["touches"]
    assert {t["run_id"] for t in listed} == {"run_kept"}
    assert not {t["span_id"] for t in target["touches"] + listed} & set(span_ids)
    assert api.get("/v1/runs/run_gone/verify").json()["status"] == "pruned"


def test_a_legal_hold_still_blocks_deletion_and_keeps_derived_rows(client: Client, api: TestClient) -> None:
    _seed(client, api)
    placed = api.post("/v1/holds", json={"scope": "run", "target": "run_gone", "reason": "matter 12"})
    assert placed.status_code == 201

    refused = api.delete("/v1/runs/run_gone", params={"reason": "cleanup"})

    assert refused.status_code == 409
    assert {table: _rows_of_run(client, table, "run_gone") > 0 for table in ("runs", "run_facts", "refs")} == {
        "runs": True,
        "run_facts": True,
        "refs": True,
    }
    assert len(api.get("/v1/runs/run_gone/annotations").json()) == 1
