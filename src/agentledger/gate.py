"""The eval gate: a candidate version's runs of an eval suite against the baseline's, each metric held to a
budget, read through the query API (`GET /v1/evals/compare`) because `up` owns the embedded data."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import Field, ValidationError

from agentledger.collector.config import ConfigError, FrozenModel, describe_validation_error
from agentledger.query_api.metrics_models import EvalComparison


class GateError(Exception):
    """The gate could not be evaluated (unreachable API, unknown suite or version, bad budgets)."""

    def __init__(self, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


class GateBudgets(FrozenModel):
    """How much worse the candidate may be than the baseline before the gate fails."""

    # Percentage points of success rate the candidate may lose.
    max_success_rate_drop: float = Field(1.0, ge=0)
    # Policy violations the candidate may add on a case where the baseline had none of that rule.
    max_new_policy_violations: int = Field(0, ge=0)
    # Percent the average cost per successful run may rise.
    max_cost_per_success_increase: float = Field(7.0, ge=0)
    # Percent the p95 run latency may rise.
    max_p95_latency_increase: float = Field(10.0, ge=0)


def load_budgets(path: Path | None, overrides: Mapping[str, float | int | None]) -> GateBudgets:
    """Budgets from the file's `budgets:` mapping, then flags (None = not given), then defaults."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read budgets file {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"budgets file {path} is not valid YAML: {error}") from None
        if not isinstance(document, dict) or not isinstance(document.get("budgets"), dict):
            raise ConfigError(f"budgets file {path} must hold a `budgets:` mapping")
        raw.update(document["budgets"])
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return GateBudgets.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error("budgets", error)) from None


def open_api(base_url: str, headers: dict[str, str] | None = None) -> httpx.Client:
    """The HTTP client the gate reads the query API with (tests swap in the app's TestClient)."""
    return httpx.Client(base_url=base_url, timeout=60, headers=headers)


def fetch_comparison(api: httpx.Client, suite: str, baseline: str, candidate: str) -> EvalComparison:
    try:
        response = api.get("/v1/evals/compare", params={"suite": suite, "baseline": baseline, "candidate": candidate})
    except httpx.HTTPError as error:
        raise GateError(
            f"cannot reach the query API at {api.base_url} ({error}); is `agentledger up` running?"
        ) from None
    if response.status_code == 404:
        raise GateError(str(response.json().get("detail", "not found")), not_found=True)
    if response.status_code != 200:
        raise GateError(f"the query API answered {response.status_code}: {response.text[:200]}")
    return EvalComparison.model_validate(response.json())


@dataclass(frozen=True)
class Check:
    name: str
    candidate: str
    baseline: str
    budget: str
    failure: str | None  # why it failed, e.g. "cost regression 9.7% > budget 7%"


def _increase_percent(baseline: float, candidate: float) -> float:
    if baseline > 0:
        return (candidate - baseline) / baseline * 100
    return math.inf if candidate > 0 else 0.0


def _number(value: float) -> str:
    return f"{value:g}"


def _dollars(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.3f}"


@dataclass(frozen=True)
class GateReport:
    comparison: EvalComparison
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.failure is None for check in self.checks)

    @property
    def result(self) -> str:
        failures = [check.failure for check in self.checks if check.failure is not None]
        return "PASS" if not failures else f"FAIL ({'; '.join(failures)})"

    def text(self) -> str:
        base, cand = self.comparison.baseline, self.comparison.candidate
        return "\n".join([
            f"Cases: {cand.cases}",
            f"Success rate: {cand.success_rate:.1%} (prev {base.success_rate:.1%})",
            f"Policy violations: {cand.policy_violations} (prev {base.policy_violations}),"
            f" new: {self.comparison.new_policy_violations}",
            f"Avg cost/success: {_dollars(cand.cost_per_success)} (prev {_dollars(base.cost_per_success)})",
            f"P95 latency: {cand.latency_p95_seconds:.1f}s (prev {base.latency_p95_seconds:.1f}s)",
            f"RESULT: {self.result}",
        ])  # fmt: skip

    def markdown(self) -> str:
        lines = [
            f"### agentledger gate: `{self.comparison.suite}` {self.comparison.candidate.version}"
            f" vs {self.comparison.baseline.version}",
            "",
            "| check | candidate | baseline | budget | result |",
            "| --- | --- | --- | --- | --- |",
        ]
        for check in self.checks:
            verdict = "pass" if check.failure is None else f"**FAIL**: {check.failure}"
            lines.append(f"| {check.name} | {check.candidate} | {check.baseline} | {check.budget} | {verdict} |")
        lines += ["", f"Cases: {self.comparison.candidate.cases}. **RESULT: {self.result}**", ""]
        return "\n".join(lines)

    def junit_xml(self) -> str:
        failures = sum(check.failure is not None for check in self.checks)
        suite = ElementTree.Element(
            "testsuite", name=f"agentledger gate {self.comparison.suite}", tests=str(len(self.checks)),
            failures=str(failures), errors="0",
        )  # fmt: skip
        for check in self.checks:
            case = ElementTree.SubElement(suite, "testcase", classname="agentledger.gate", name=check.name)
            detail = f"candidate {check.candidate}, baseline {check.baseline}, budget {check.budget}"
            if check.failure is not None:
                ElementTree.SubElement(case, "failure", message=check.failure).text = detail
            else:
                ElementTree.SubElement(case, "system-out").text = detail
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def judge(comparison: EvalComparison, budgets: GateBudgets) -> GateReport:
    base, cand = comparison.baseline, comparison.candidate
    checks = []

    drop = (base.success_rate - cand.success_rate) * 100
    checks.append(Check(
        "success rate", f"{cand.success_rate:.1%}", f"{base.success_rate:.1%}",
        f"-{_number(budgets.max_success_rate_drop)} pp",
        f"success rate drop {drop:.1f} pp > budget {_number(budgets.max_success_rate_drop)} pp"
        if drop > budgets.max_success_rate_drop else None,
    ))  # fmt: skip

    new = comparison.new_policy_violations
    checks.append(Check(
        "new policy violations", str(new), "0", str(budgets.max_new_policy_violations),
        f"{new} new policy violations > budget {budgets.max_new_policy_violations}"
        if new > budgets.max_new_policy_violations else None,
    ))  # fmt: skip

    # A candidate without any success has no cost per success; the success-rate check reports that.
    cost_failure = None
    if cand.cost_per_success is not None and base.cost_per_success is not None:
        rise = _increase_percent(base.cost_per_success, cand.cost_per_success)
        if rise > budgets.max_cost_per_success_increase:
            cost_failure = f"cost regression {rise:.1f}% > budget {_number(budgets.max_cost_per_success_increase)}%"
    checks.append(Check(
        "cost per success", _dollars(cand.cost_per_success), _dollars(base.cost_per_success),
        f"+{_number(budgets.max_cost_per_success_increase)}%", cost_failure,
    ))  # fmt: skip

    rise = _increase_percent(base.latency_p95_seconds, cand.latency_p95_seconds)
    checks.append(Check(
        "p95 latency", f"{cand.latency_p95_seconds:.1f}s", f"{base.latency_p95_seconds:.1f}s",
        f"+{_number(budgets.max_p95_latency_increase)}%",
        f"p95 latency regression {rise:.1f}% > budget {_number(budgets.max_p95_latency_increase)}%"
        if rise > budgets.max_p95_latency_increase else None,
    ))  # fmt: skip
    return GateReport(comparison, checks)
