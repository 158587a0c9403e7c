"""Fleet metrics over seeded runs with known outcomes, costs, latencies, violations and corrections:
every figure is checked against the value worked out by hand in the comments."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.metrics_config import MetricsConfig, ModelPrice
from agentledger.schema import conventions as conv
from tests.query_api.seed import (
    HOUR,
    SECOND,
    T0,
    Run,
    Write,
    approval,
    policy,
    prompt,
    seed_annotation,
    seed_runs,
    seed_writes,
    write_call,
)

# $1 / $4 per million tokens; a reviewer's hour costs $36, i.e. $0.01 a second.
CONFIG = MetricsConfig(
    pricing={"gpt-a": ModelPrice(input_per_million=1.0, output_per_million=4.0)}, review_cost_per_hour=36.0
)
FLEET = [
    # model 1000*1e-6 + 200*4e-6 = 0.0018, tool 0.01, review 60 s = 0.6 -> 0.6118
    Run(
        "r1",
        "refund-agent",
        T0,
        2 * SECOND,
        "success",
        "support-refunds",
        children=[
            prompt(0.1, "gpt-a", 1000, 200),
            approval(0.3, "approved", 60),
            write_call(0.5, "crm:C-1", 50.0, cost=0.01),
        ],
    ),
    # model 2000*1e-6 = 0.002; an auto-approval costs no review time
    Run(
        "r2",
        "refund-agent",
        T0 + 60 * SECOND,
        4 * SECOND,
        "success",
        "support-refunds",
        children=[
            prompt(0.1, "gpt-a", 2000, 0),
            approval(0.2, "auto_approved", 30),
            write_call(0.5, "crm:C-2", 30.0),
        ],
    ),
    # review 120 s = 1.2; escalated because of the policy that asked for review
    Run(
        "r3",
        "refund-agent",
        T0 + 120 * SECOND,
        10 * SECOND,
        "escalated",
        "support-refunds",
        children=[
            policy(0.1, "refunds.max-amount", "amount-over-100", "review"),
            approval(0.2, "rejected", 120),
            policy(0.3, "refunds.fraud", "new-payee", "allow"),
        ],
    ),
    # reported failure, but a reviewer's outcome annotation makes it a success; unpriced model
    Run(
        "r4",
        "coder",
        T0 + 180 * SECOND,
        6 * SECOND,
        "failure",
        "coding",
        children=[
            prompt(0.1, "local-llm", 500, 50),
            policy(0.2, "git.merge", "no-merge-without-review", "block"),
        ],
    ),
    Run(
        "r5",
        "coder",
        T0 + 240 * SECOND,
        8 * SECOND,
        "escalated",
        "coding",
        attributes={conv.AGENTLEDGER_RUN_OUTCOME_REASON: "tests flaky"},
    ),
    # outside the period asked for: counts nowhere
    Run(
        "r0",
        "refund-agent",
        T0 - HOUR,
        1 * SECOND,
        "failure",
        "support-refunds",
        children=[
            policy(0.1, "refunds.max-amount", "amount-over-100", "block"),
        ],
    ),
]
WRITES = [
    Write("r1", "stripe", "re_1", "crm:C-1", T0 + 1 * SECOND),
    # a person reverses r1's refund 300 s later: r1's write is corrected after 300 s
    Write("", "stripe", "re_1_reversal", "crm:C-1", T0 + 301 * SECOND, action="update"),
    Write("r2", "stripe", "re_2", "crm:C-2", T0 + 61 * SECOND),
    Write("r4", "github", "pr/1", "repo:shop", T0 + 181 * SECOND),
    # r4's own later write to the same target is not a correction
    Write("r4", "github", "pr/1-merge", "repo:shop", T0 + 191 * SECOND, action="merge"),
]
PERIOD = {"from": "2026-11-20T10:00:00Z", "to": str(T0 + HOUR)}


@pytest.fixture
def api(client: Client) -> TestClient:
    seed_runs(client, FLEET)
    seed_writes(client, WRITES)
    seed_annotation(client, "r4", "outcome", "success", T0 + 200 * SECOND)
    # a reviewer flags r4 as needing correction at +781 s: pr/1 stood 600 s, the merge 590 s
    seed_annotation(client, "r4", "correction", "reverted", T0 + 781 * SECOND)
    return TestClient(create_app(client, QueryApiConfig(metrics=CONFIG)))


def _groups(api: TestClient, **params: str) -> dict[str, Any]:
    response = api.get("/v1/metrics", params={**PERIOD, **params})
    assert response.status_code == 200, response.text
    return {group["group"]: group for group in response.json()["groups"]}


def test_metrics_per_agent_have_the_exact_values(api: TestClient) -> None:
    groups = _groups(api, group_by="agent")

    assert sorted(groups) == ["coder", "refund-agent"]
    refunds, coder = groups["refund-agent"], groups["coder"]
    assert (refunds["runs"], refunds["successes"], refunds["escalations"]) == (3, 2, 1)
    assert refunds["success_rate"] == pytest.approx(2 / 3)
    assert refunds["escalation_rate"] == pytest.approx(1 / 3)
    assert refunds["escalation_reasons"] == [{"reason": "refunds.max-amount", "runs": 1}]
    assert refunds["cost"]["model"] == pytest.approx(0.0038, abs=1e-12)
    assert refunds["cost"]["tools"] == pytest.approx(0.01, abs=1e-12)
    assert refunds["cost"]["human_review"] == pytest.approx(1.8, abs=1e-12)
    assert refunds["cost"]["human_review_seconds"] == pytest.approx(180.0)
    assert refunds["cost"]["total"] == pytest.approx(1.8138, abs=1e-12)
    assert refunds["cost"]["per_successful_outcome"] == pytest.approx(0.9069, abs=1e-12)
    assert refunds["cost"]["unpriced_models"] == []
    # nearest rank over [2, 4, 10] s: positions floor(0.5 * 3) = 1 and floor(0.95 * 3) = 2
    assert refunds["latency"] == {"p50_seconds": 4.0, "p95_seconds": 10.0}
    assert refunds["policy_violations"] == 1
    assert refunds["policy_violations_by_rule"] == [
        {"policy_id": "refunds.max-amount", "rule_id": "amount-over-100", "decision": "review", "count": 1}
    ]
    assert refunds["time_to_correct"] == {
        "writes": 2,
        "corrected": 1,
        "p50_seconds": 300.0,
        "mean_seconds": 300.0,
        "max_seconds": 300.0,
    }

    assert (coder["runs"], coder["successes"], coder["escalations"]) == (2, 1, 1)
    assert coder["escalation_reasons"] == [{"reason": "tests flaky", "runs": 1}]
    assert coder["cost"]["total"] == 0.0
    assert coder["cost"]["per_successful_outcome"] == 0.0
    assert coder["cost"]["unpriced_models"] == ["local-llm"]
    assert coder["latency"] == {"p50_seconds": 8.0, "p95_seconds": 8.0}
    assert coder["policy_violations_by_rule"] == [
        {"policy_id": "git.merge", "rule_id": "no-merge-without-review", "decision": "block", "count": 1}
    ]
    assert coder["time_to_correct"] == {
        "writes": 2,
        "corrected": 2,
        "p50_seconds": 600.0,
        "mean_seconds": 595.0,
        "max_seconds": 600.0,
    }


def test_metrics_for_the_tenant_and_per_workflow(api: TestClient) -> None:
    tenant = _groups(api, group_by="tenant")["default"]
    assert (tenant["runs"], tenant["successes"], tenant["escalations"], tenant["policy_violations"]) == (5, 3, 2, 2)
    assert tenant["escalation_reasons"] == [
        {"reason": "refunds.max-amount", "runs": 1},
        {"reason": "tests flaky", "runs": 1},
    ]
    assert tenant["cost"]["per_successful_outcome"] == pytest.approx(1.8138 / 3, abs=1e-12)
    # [2, 4, 6, 8, 10] s: positions 2 and 4
    assert tenant["latency"] == {"p50_seconds": 6.0, "p95_seconds": 10.0}
    assert tenant["time_to_correct"]["writes"] == 4
    assert tenant["time_to_correct"]["corrected"] == 3

    workflows = _groups(api, group_by="workflow")
    assert {name: group["runs"] for name, group in workflows.items()} == {"coding": 2, "support-refunds": 3}


def test_filters_select_one_agent_and_the_period_excludes_older_runs(api: TestClient) -> None:
    only = _groups(api, group_by="workflow", agent="coder")
    assert list(only) == ["coding"]

    earlier = _groups(api, group_by="agent", **{"from": str(T0 - 2 * HOUR), "to": str(T0)})
    assert list(earlier) == ["refund-agent"]
    assert earlier["refund-agent"]["runs"] == 1
    assert earlier["refund-agent"]["policy_violations_by_rule"][0]["decision"] == "block"


def test_a_run_resumed_in_a_second_trace_ends_as_its_last_part_says(client: Client) -> None:
    # Paused after a success-looking first part, resumed 100 s later, then failed: one run of 102 s.
    seed_runs(client, [
        Run("rr", "resumer", T0 + 300 * SECOND, 1 * SECOND, "success"),
        Run("rr", "resumer", T0 + 400 * SECOND, 2 * SECOND, "failure"),
    ])  # fmt: skip
    api = TestClient(create_app(client, QueryApiConfig(metrics=CONFIG)))

    group = _groups(api, group_by="agent")["resumer"]

    assert (group["runs"], group["successes"]) == (1, 0)
    assert group["latency"] == {"p50_seconds": 102.0, "p95_seconds": 102.0}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"from": "yesterday"},
            "from must be RFC 3339 (e.g. 2026-11-25T10:00:00Z) or unix nanoseconds, not 'yesterday'",
        ),
        ({"to": "2026-11-20T10:00:00"}, "to must carry a UTC offset (e.g. Z or +02:00): '2026-11-20T10:00:00'"),
        ({"from": str(T0), "to": str(T0)}, f"from ({T0}) must be before to ({T0})"),
    ],
)
def test_a_bad_period_is_refused_with_a_sentence(api: TestClient, params: dict[str, str], message: str) -> None:
    response = api.get("/v1/metrics", params=params)
    assert response.status_code == 422
    assert response.json() == {"detail": message}


def test_an_unknown_grouping_is_refused(api: TestClient) -> None:
    assert api.get("/v1/metrics", params={"group_by": "model"}).status_code == 422


def test_runs_count_for_the_authenticated_agent_not_the_one_the_spans_claim(client: Client) -> None:
    seed_runs(client, FLEET)
    # Sent with coder's token, but every span claims refund-agent.
    seed_runs(client, [Run("f1", "refund-agent", T0 + 300 * SECOND, 2 * SECOND, "success", "coding")],
              verified_agent="coder")  # fmt: skip
    api = TestClient(create_app(client, QueryApiConfig(metrics=CONFIG)))

    groups = _groups(api, group_by="agent")
    only_coder = _groups(api, group_by="agent", agent="coder")

    assert (groups["refund-agent"]["runs"], groups["coder"]["runs"]) == (3, 3)
    assert list(only_coder) == ["coder"] and only_coder["coder"]["runs"] == 3
