"""`agentledger gate` over crafted baselines: a candidate within every budget passes, and each budget
(success rate, new policy violations, cost per success, p95 latency) is tripped by one candidate."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger import cli
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.metrics_config import MetricsConfig, ModelPrice
from agentledger.schema import conventions as conv
from tests.query_api.seed import SECOND, T0, Child, Run, policy, prompt, seed_annotation, seed_runs

# 10,000 input tokens cost $0.01.
CONFIG = MetricsConfig(pricing={"gpt-a": ModelPrice(input_per_million=1.0, output_per_million=0.0)})

# case -> (outcome, input tokens, latency in s, violations); the baseline: 3 of 4 succeed, $0.04 / 3
# successes = $0.0133 per success, p95 (nearest rank of 4) = the slowest run, 4 s.
BASELINE = {
    "c1": ("success", 10_000, 1.0, ()),
    "c2": ("success", 10_000, 2.0, ()),
    "c3": ("success", 10_000, 3.0, ()),
    "c4": ("failure", 10_000, 4.0, (("payments", "no-self-refund"),)),
}
CANDIDATES = {
    "v2-same": BASELINE,
    # c3 now fails; c3 and c4 cost less, so cost per success falls to $0.025 / 2 = $0.0125; 50% (-25 pp)
    "v2-success": {
        **BASELINE,
        "c3": ("failure", 0, 3.0, ()),
        "c4": ("failure", 5_000, 4.0, (("payments", "no-self-refund"),)),
    },
    # a violation on c2 the baseline did not have
    "v2-violation": {**BASELINE, "c2": ("success", 10_000, 2.0, (("payments", "amount-limit"),))},
    # c1 costs $0.013: $0.043 / 3 = $0.01433, +7.5%
    "v2-cost": {**BASELINE, "c1": ("success", 13_000, 1.0, ())},
    # the slowest run takes 4.5 s: +12.5%
    "v2-latency": {**BASELINE, "c4": ("failure", 10_000, 4.5, (("payments", "no-self-refund"),))},
}


def _runs(version: str, cases: dict[str, tuple[str, int, float, tuple[tuple[str, str], ...]]], start: int) -> list[Run]:
    runs = []
    for index, (case, (outcome, tokens, latency_s, violations)) in enumerate(sorted(cases.items())):
        children: list[Child] = [prompt(0.1, "gpt-a", tokens, 0)]
        children += [policy(0.2, policy_id, rule_id, "block") for policy_id, rule_id in violations]
        runs.append(Run(
            f"{version}-{case}", "refund-agent", start + index * 10 * SECOND, int(latency_s * SECOND), outcome,
            attributes={conv.AGENTLEDGER_EVAL_SUITE: "gold", conv.AGENTLEDGER_EVAL_CASE: case,
                        conv.AGENTLEDGER_EVAL_VERSION: version},
        children=children))  # fmt: skip
    return runs


@pytest.fixture
def app(client: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    runs = _runs("v1", BASELINE, T0)
    for number, (version, cases) in enumerate(CANDIDATES.items(), start=1):
        runs += _runs(version, cases, T0 + number * 100 * SECOND)
    # another suite's runs of the same versions must not count
    smoke = {conv.AGENTLEDGER_EVAL_SUITE: "smoke", conv.AGENTLEDGER_EVAL_VERSION: "v2-same"}
    runs.append(Run("other", "refund-agent", T0, 99 * SECOND, "failure", attributes=smoke))
    seed_runs(client, runs)
    test_client = TestClient(create_app(client, QueryApiConfig(metrics=CONFIG)))
    monkeypatch.setattr(cli, "open_api", lambda _url, _headers=None: test_client)
    yield test_client


def _gate(candidate: str, *extra: str) -> list[str]:
    return ["gate", "--suite", "gold", "--baseline", "v1", "--candidate", candidate, *extra]


def test_a_candidate_within_every_budget_passes(app: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(_gate("v2-same")) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Cases: 4",
        "Success rate: 75.0% (prev 75.0%)",
        "Policy violations: 1 (prev 1), new: 0",
        "Avg cost/success: $0.013 (prev $0.013)",
        "P95 latency: 4.0s (prev 4.0s)",
        "RESULT: PASS",
    ]


@pytest.mark.parametrize(
    ("candidate", "result"),
    [
        ("v2-success", "RESULT: FAIL (success rate drop 25.0 pp > budget 1 pp)"),
        ("v2-violation", "RESULT: FAIL (1 new policy violations > budget 0)"),
        ("v2-cost", "RESULT: FAIL (cost regression 7.5% > budget 7%)"),
        ("v2-latency", "RESULT: FAIL (p95 latency regression 12.5% > budget 10%)"),
    ],
)
def test_each_budget_fails_the_gate(
    app: TestClient, capsys: pytest.CaptureFixture[str], candidate: str, result: str
) -> None:
    assert cli.main(_gate(candidate)) == 1
    assert capsys.readouterr().out.splitlines()[-1] == result


def test_the_compare_endpoint_reports_both_versions(app: TestClient) -> None:
    body = app.get("/v1/evals/compare", params={"suite": "gold", "baseline": "v1", "candidate": "v2-violation"}).json()

    assert body["new_policy_violations"] == 1
    assert body["baseline"] == {
        "version": "v1", "cases": 4, "runs": 4, "successes": 3, "success_rate": 0.75, "policy_violations": 1,
        "cost_per_success": pytest.approx(0.04 / 3), "total_cost": pytest.approx(0.04), "latency_p95_seconds": 4.0,
        "unpriced_models": [],
    }  # fmt: skip
    assert body["candidate"]["policy_violations"] == 2


def test_a_reviewer_annotation_defines_success(
    app: TestClient, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reviewer says c4's baseline run actually succeeded: the baseline is now 100%, the same candidate 75%.
    seed_annotation(client, "v1-c4", "outcome", "success", T0 + 3_600 * SECOND)

    assert cli.main(_gate("v2-same")) == 1
    assert "Success rate: 75.0% (prev 100.0%)" in capsys.readouterr().out


def test_budgets_come_from_a_file_and_flags_override_it(
    app: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  max_cost_per_success_increase: 8\n  max_p95_latency_increase: 5\n")

    assert cli.main(_gate("v2-cost", "--budgets", str(budgets))) == 0
    assert cli.main(_gate("v2-cost", "--budgets", str(budgets), "--max-cost-per-success-increase", "7")) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "RESULT: FAIL (cost regression 7.5% > budget 7%)"


def test_the_gate_writes_junit_and_markdown(app: TestClient, tmp_path: Path) -> None:
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"

    assert cli.main(_gate("v2-latency", "--junit", str(junit), "--markdown", str(markdown))) == 1

    suite = ElementTree.parse(junit).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "4", "1")
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["p95 latency"]
    failure = suite.find("testcase[@name='p95 latency']/failure")
    assert failure is not None and failure.get("message") == "p95 latency regression 12.5% > budget 10%"
    text = markdown.read_text()
    assert "| p95 latency | 4.5s | 4.0s | +10% | **FAIL**: p95 latency regression 12.5% > budget 10% |" in text
    assert text.splitlines()[-1] == "Cases: 4. **RESULT: FAIL (p95 latency regression 12.5% > budget 10%)**"


def test_an_unknown_version_and_bad_budgets_end_with_a_sentence(
    app: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_gate("v9")) == 1
    assert capsys.readouterr().err == (
        "agentledger gate: suite 'gold' has no runs of version 'v1' or 'v9' (agentledger.eval.version)\n"
    )
    assert cli.main(_gate("v2-same", "--max-new-policy-violations", "-1")) == 2
    assert capsys.readouterr().err.startswith("agentledger gate: budgets.max_new_policy_violations: ")
