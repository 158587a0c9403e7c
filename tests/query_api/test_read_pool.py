"""The read pool on real chDB: a request's reads run at once on handles of their own, give the answers the
same reads give one after another, never wait behind the main client, and errors reach the caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi.testclient import TestClient

from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.read_pool import InlineReads, ReadPool
from tests.query_api.incidents import PrRun, github_pull_request, ingest, pr_run_spans

# Long enough that a read queued behind the main client would still be waiting when the check is made.
_BUSY_S = 4


def test_reads_given_at_once_run_at_once(client: Client) -> None:
    # Each read waits for the other at a barrier: run one after another, the first would time out.
    barrier = threading.Barrier(2, timeout=30)
    pool = ReadPool.beside(client, workers=2)
    try:

        def meet(reader: Client) -> int:
            barrier.wait()
            return int(reader.command("SELECT 1"))

        first, second = pool.submit(meet), pool.submit(meet)
        assert (first.result(), second.result()) == (1, 1)
    finally:
        pool.close()


def test_the_pool_reads_through_handles_of_its_own_on_the_same_database(client: Client) -> None:
    client.command("CREATE TABLE marker (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.command("INSERT INTO marker VALUES (7)")
    pool = ReadPool.beside(client, workers=1)
    try:
        reader = pool.submit(lambda reader: reader).result()
        assert reader is not client
        assert pool.submit(lambda reader: reader.command("SELECT x FROM marker")).result() == 7
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda reader: reader.command("SELECT 1"))


# What a responder reads during an incident, in turn while the main client is busy.
_RESPONDER_READS = (
    "/v1/runs/run_pr/timeline",
    "/v1/runs/run_pr/audit",
    "/v1/runs/run_pr/verify",
    "/v1/runs?limit=10",
    "/v1/writes?ref=https://github.com/acme/shop/pull/512",
    "/healthz",
)


def test_requests_do_not_wait_behind_a_statement_of_the_main_client(client: Client) -> None:
    ingest(client, pr_run_spans(PrRun("run_pr")))
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    started = threading.Event()

    def busy() -> None:
        # The collector's insert holds the main client this way: one statement at a time per handle.
        started.set()
        client.command(f"SELECT sleepEachRow(0.5) FROM numbers({_BUSY_S * 2}) SETTINGS max_block_size = 1")

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        started.wait()
        responses = [api.get(path) for path in _RESPONDER_READS]
        still_busy = worker.is_alive()
    finally:
        worker.join()
    assert [response.status_code for response in responses] == [200] * len(_RESPONDER_READS), responses[-1].text
    assert still_busy, "a request waited for the main client's statement"


def test_a_timeline_and_an_audit_read_at_once_equal_the_same_reads_in_turn(client: Client) -> None:
    ingest(client, pr_run_spans(PrRun("run_pr", approve_pr=False)))
    at_once = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    at_once.post("/v1/hooks/github", json=github_pull_request("run_pr"), headers={"X-GitHub-Event": "pull_request"})
    in_turn = TestClient(create_app(client, QueryApiConfig(tenant="default"), InlineReads(client)))
    for path in ("/v1/runs/run_pr/timeline", "/v1/runs/run_pr/audit", "/v1/runs?with_findings=true"):
        pooled, sequential = at_once.get(path), in_turn.get(path)
        assert pooled.status_code == sequential.status_code == 200, (path, pooled.text)
        assert pooled.json() == sequential.json(), path
    timeline = at_once.get("/v1/runs/run_pr/timeline").json()
    assert [entry for entry in timeline["entries"] if entry["type"] == "write"], "the write is in the timeline"
    assert timeline["audit"]["findings"], "the unapproved write call is a finding"


def test_a_read_that_fails_in_the_pool_fails_the_request_with_a_sentence(client: Client) -> None:
    pool = ReadPool.beside(client, workers=2)
    try:
        failed = pool.submit(lambda reader: reader.command("SELECT * FROM no_such_table"))
        with pytest.raises(ClickHouseError):
            failed.result()
        # The handle that failed a read goes on reading.
        assert pool.submit(lambda reader: reader.command("SELECT 2")).result() == 2
    finally:
        pool.close()
    client.command("DROP TABLE runs")
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    response = api.get("/v1/runs/run_x/timeline")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("storage error:")


def test_many_requests_at_once_each_get_whole_answers(client: Client) -> None:
    for index in range(4):
        ingest(client, pr_run_spans(PrRun(f"run_{index}")))
    api = TestClient(create_app(client, QueryApiConfig(tenant="default")))
    expected = {index: api.get(f"/v1/runs/run_{index}/timeline").json() for index in range(4)}
    with ThreadPoolExecutor(12) as requests:
        answers = list(requests.map(lambda n: (n % 4, api.get(f"/v1/runs/run_{n % 4}/timeline")), range(48)))
    assert all(response.status_code == 200 for _, response in answers)
    assert all(response.json() == expected[index] for index, response in answers)
