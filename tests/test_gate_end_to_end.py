"""`agentledger gate` as a user runs it: eval runs tagged by the emitter go through the real collector of
a running `agentledger up`, and the command reads the comparison over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx

from agentledger.emitter import EvalCase, agent_run
from agentledger.schema.conventions import RunOutcomeValues as Outcome
from tests.conftest import RunningService, sdk_tracer_provider

# v1 succeeds on all four cases, v2 fails case c4.
OUTCOMES = {"v1": [Outcome.SUCCESS] * 4, "v2": [Outcome.SUCCESS] * 3 + [Outcome.FAILURE]}


def _send_eval_runs(collector_url: str) -> None:
    provider = sdk_tracer_provider(collector_url, service_name="eval-runner")
    for version, outcomes in OUTCOMES.items():
        for number, outcome in enumerate(outcomes, start=1):
            with agent_run("refund-agent-eval", eval_case=EvalCase("gold", f"c{number}", version),
                           tracer_provider=provider) as run:  # fmt: skip
                run.set_outcome(outcome)
    provider.shutdown()


def _wait_for_runs(api_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{api_url}/v1/evals/compare", params={"suite": "gold", "baseline": "v1", "candidate": "v2"}
        )
        body = response.json()
        if response.status_code == 200 and body["baseline"]["runs"] == 4 and body["candidate"]["runs"] == 4:
            return
        time.sleep(0.2)
    raise AssertionError(f"the eval runs did not arrive in {timeout}s: {body}")


def _gate(service: RunningService, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentledger", "gate", "--suite", "gold", "--api-url", service.api_url,
         # run durations here are microseconds of wall-clock noise: latency is not what this test is about
         "--max-p95-latency-increase", "1000000", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_gate_passes_and_fails_through_a_running_service(service: RunningService) -> None:
    _send_eval_runs(service.collector_url)
    _wait_for_runs(service.api_url)

    same = _gate(service, "--baseline", "v1", "--candidate", "v1")
    worse = _gate(service, "--baseline", "v1", "--candidate", "v2")
    missing = _gate(service, "--baseline", "v1", "--candidate", "v3")

    assert (same.returncode, same.stdout.splitlines()[-1]) == (0, "RESULT: PASS"), same.stderr
    assert worse.returncode == 1
    assert worse.stdout.splitlines()[:2] == ["Cases: 4", "Success rate: 75.0% (prev 100.0%)"]
    assert worse.stdout.splitlines()[-1] == "RESULT: FAIL (success rate drop 25.0 pp > budget 1 pp)"
    assert worse.stderr == ""
    assert missing.returncode == 1
    assert missing.stderr == (
        "agentledger gate: suite 'gold' has no runs of version 'v1' or 'v3' (agentledger.eval.version)\n"
    )
