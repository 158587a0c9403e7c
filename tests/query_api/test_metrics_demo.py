"""The metrics API inside the real `agentledger up`, configured from its YAML file, over the demo runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentledger.demo import send_demo
from tests.conftest import RunningService, start_service

CONFIG = """
api:
  metrics:
    pricing:
      gpt-4.1-mini: {input_per_million: 0.4, output_per_million: 1.6}
    blast_radius:
      ceilings:
        refund-agent-prod-1: {money_moved: 200}
"""


@pytest.fixture
def configured_service(tmp_path: Path) -> Iterator[RunningService]:
    config = tmp_path / "agentledger.yaml"
    config.write_text(CONFIG)
    running = start_service(tmp_path / "data", "--config", str(config))
    yield running
    running.stop()


def _metrics(api_url: str, runs: int, timeout: float = 30.0) -> dict[str, Any]:
    """Polls until `runs` runs are counted: export from the spool is asynchronous."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{api_url}/v1/metrics", params={"group_by": "workflow"}, timeout=10).json()
        if sum(group["runs"] for group in body["groups"]) >= runs:
            return body
        time.sleep(0.2)
    raise AssertionError(f"the metrics did not reach {runs} runs in {timeout}s: {body}")


def test_demo_runs_grouped_by_workflow_priced_from_the_config_file(configured_service: RunningService) -> None:
    report = send_demo(configured_service.collector_url)
    groups = {group["group"]: group for group in _metrics(configured_service.api_url, len(report.runs))["groups"]}

    assert {name: (g["runs"], g["successes"], g["escalations"]) for name, g in groups.items()} == {
        "code-changes": (2, 2, 0),
        "invoice-reconciliation": (2, 1, 0),
        "support-refunds": (6, 5, 1),
        "storage-cleanup": (1, 1, 0),
    }
    refunds = groups["support-refunds"]
    assert refunds["escalation_reasons"] == [{"reason": "refunds.max-amount", "runs": 1}]
    # the refund prompts: 8,184 input and 573 output tokens of gpt-4.1-mini at $0.4 / $1.6 per million
    assert refunds["cost"]["model"] == pytest.approx(8_184 * 0.4e-6 + 573 * 1.6e-6, abs=1e-12)
    assert refunds["cost"]["per_successful_outcome"] == pytest.approx((8_184 * 0.4e-6 + 573 * 1.6e-6) / 5, abs=1e-12)
    assert refunds["policy_violations_by_rule"] == [
        {"policy_id": "refunds.max-amount", "rule_id": "amount-over-100", "decision": "review", "count": 3}
    ]
    assert groups["code-changes"]["cost"]["unpriced_models"] == ["claude-sonnet-4.5"]
    assert groups["invoice-reconciliation"]["cost"]["unpriced_models"] == ["gpt-4.1"]


def test_demo_refund_agent_exceeds_its_configured_money_ceiling(configured_service: RunningService) -> None:
    report = send_demo(configured_service.collector_url)
    _metrics(configured_service.api_url, len(report.runs))

    blast = httpx.get(f"{configured_service.api_url}/v1/agents/refund-agent-prod-1/blast-radius", timeout=10).json()

    # seven refunds (240 + 35 + 3 x 95 + 45 + 1,200 EUR) and two ticket replies, all within the same hour
    assert (blast["write_tool_calls"], blast["money_moved"]) == (9, 1805.0)
    assert blast["ceiling"] == {"write_tool_calls": None, "distinct_targets": None, "money_moved": 200.0}
    assert (blast["exceeded"], blast["exceeded_limits"]) == (True, ["money_moved"])
