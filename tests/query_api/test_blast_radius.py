"""Blast radius of an agent: a crafted worst hour among quieter ones, its downstream writes by system,
and the configured ceiling."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.metrics_config import BlastRadiusCeiling, BlastRadiusConfig, MetricsConfig
from tests.query_api.seed import HOUR, SECOND, T0, Run, Write, seed_runs, seed_writes, write_call

CONFIG = MetricsConfig(
    blast_radius=BlastRadiusConfig(
        ceilings={
            "payout-agent": BlastRadiusCeiling(write_tool_calls=3, money_moved=500.0),
            "*": BlastRadiusCeiling(distinct_targets=10),
        }
    )
)
RUNS = [
    # hour 0: 2 writes, 30 moved
    Run("p1", "payout-agent", T0 + 10 * SECOND, 60 * SECOND, "success", children=[
        write_call(1, "acct:A", 10.0), write_call(2, "acct:B", 20.0),
    ]),
    # hour 1, the worst: 4 writes over two runs, 3 targets, 200 moved; reads do not count
    Run("p2", "payout-agent", T0 + HOUR + 5 * SECOND, 60 * SECOND, "success", children=[
        write_call(1, "acct:A", 100.0), write_call(2, "acct:C", 50.0), write_call(3, "acct:C", access="read"),
    ]),
    Run("p3", "payout-agent", T0 + HOUR + 1_800 * SECOND, 60 * SECOND, "success", children=[
        write_call(1, "acct:C", 25.0), write_call(2, "acct:D", 25.0),
    ]),
    # hour 2: 3 writes moving far more: ranked below hour 1, which made more write calls
    Run("p4", "payout-agent", T0 + 2 * HOUR, 60 * SECOND, "success", children=[
        write_call(1, "acct:E", 1_000.0), write_call(2, "acct:E", 1_000.0), write_call(3, "acct:E", 1_000.0),
    ]),
    # another agent in the worst hour: not this agent's blast radius
    Run("o1", "other-agent", T0 + HOUR + 60 * SECOND, 60 * SECOND, "success", children=[
        write_call(1, "acct:Z", 9_999.0), write_call(2, "acct:Y"), write_call(3, "acct:X"),
        write_call(4, "acct:W"), write_call(5, "acct:V"),
    ]),
]  # fmt: skip
WRITES = [
    Write("p1", "stripe", "tr_1", "acct:A", T0 + 12 * SECOND),
    Write("p2", "stripe", "tr_2", "acct:A", T0 + HOUR + 7 * SECOND),
    Write("p2", "stripe", "tr_3", "acct:C", T0 + HOUR + 8 * SECOND),
    Write("p3", "ledger", "jr_1", "acct:C", T0 + HOUR + 1_802 * SECOND),
    Write("p3", "stripe", "tr_4", "acct:D", T0 + HOUR + 1_803 * SECOND),
    Write("o1", "stripe", "tr_9", "acct:Z", T0 + HOUR + 61 * SECOND),
]
PERIOD = {"from": str(T0), "to": str(T0 + 3 * HOUR)}


@pytest.fixture
def api(client: Client) -> TestClient:
    seed_runs(client, RUNS)
    seed_writes(client, WRITES)
    return TestClient(create_app(client, QueryApiConfig(metrics=CONFIG)))


def test_the_worst_hour_is_found_and_checked_against_the_agents_ceiling(api: TestClient) -> None:
    response = api.get("/v1/agents/payout-agent/blast-radius", params={"window": "1h", **PERIOD})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "agent_id": "payout-agent",
        "from_ns": T0,
        "to_ns": T0 + 3 * HOUR,
        "window_seconds": 3_600,
        "worst_window_start_ns": T0 + HOUR,
        "worst_window_end_ns": T0 + 2 * HOUR,
        "write_tool_calls": 4,
        "distinct_targets": 3,
        "money_moved": 200.0,
        "downstream_writes_by_system": {"ledger": 1, "stripe": 3},
        "ceiling": {"write_tool_calls": 3, "distinct_targets": None, "money_moved": 500.0},
        "exceeded": True,
        "exceeded_limits": ["write_tool_calls"],
    }


def test_the_default_ceiling_applies_to_agents_without_their_own(api: TestClient) -> None:
    body = api.get("/v1/agents/other-agent/blast-radius", params={"window": "30m", **PERIOD}).json()

    assert (body["write_tool_calls"], body["distinct_targets"], body["money_moved"]) == (5, 5, 9_999.0)
    assert body["worst_window_start_ns"] == T0 + HOUR
    assert body["downstream_writes_by_system"] == {"stripe": 1}
    assert body["ceiling"] == {"write_tool_calls": None, "distinct_targets": 10, "money_moved": None}
    assert (body["exceeded"], body["exceeded_limits"]) == (False, [])


def test_an_agent_that_wrote_nothing_has_an_empty_blast_radius(api: TestClient) -> None:
    body = api.get("/v1/agents/idle-agent/blast-radius", params=PERIOD).json()

    assert body["worst_window_start_ns"] is None
    assert (body["write_tool_calls"], body["money_moved"], body["downstream_writes_by_system"]) == (0, 0.0, {})
    assert body["exceeded"] is False


def test_a_bad_window_is_refused_with_a_sentence(api: TestClient) -> None:
    response = api.get("/v1/agents/payout-agent/blast-radius", params={"window": "an hour"})

    assert response.status_code == 422
    assert response.json() == {
        "detail": "window must be a whole number followed by s, m, h or d (e.g. 1h), not 'an hour'"
    }


def test_write_calls_count_for_the_authenticated_agent_not_the_one_a_span_claims(client: Client) -> None:
    seed_runs(client, RUNS)
    seed_writes(client, WRITES)
    # An agent authenticated as mallory-agent sends 40 write calls in the worst hour claiming payout-agent.
    forged = Run("m1", "payout-agent", T0 + HOUR + 100 * SECOND, 600 * SECOND, "success", children=[
        write_call(index, f"acct:M{index}", 1.0) for index in range(1, 41)
    ])  # fmt: skip
    seed_runs(client, [forged], verified_agent="mallory-agent")
    seed_writes(client, [Write("m1", "stripe", "tr_m", "acct:M1", T0 + HOUR + 150 * SECOND)])
    api = TestClient(create_app(client, QueryApiConfig(metrics=CONFIG)))

    payout = api.get("/v1/agents/payout-agent/blast-radius", params={"window": "1h", **PERIOD}).json()
    mallory = api.get("/v1/agents/mallory-agent/blast-radius", params={"window": "1h", **PERIOD}).json()

    # payout-agent's figures are its own (unauthenticated spans fall back to the agent id they carry)
    assert (payout["write_tool_calls"], payout["distinct_targets"], payout["money_moved"]) == (4, 3, 200.0)
    assert payout["downstream_writes_by_system"] == {"ledger": 1, "stripe": 3}
    assert (mallory["write_tool_calls"], mallory["distinct_targets"], mallory["money_moved"]) == (40, 40, 40.0)
    assert mallory["worst_window_start_ns"] == T0 + HOUR
    assert mallory["downstream_writes_by_system"] == {"stripe": 1}
