"""What a run used and what it cost, from its timeline and the configured prices; and finding severities.

Pure functions over the API's models, so the timeline, the runs listing and the CLI agree on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from agentledger.query_api.metrics_config import MetricsConfig
from agentledger.query_api.models import Finding, RunTotals, Timeline
from agentledger.schema.conventions import AGENTLEDGER_TOOL_COST

# Most severe first; a severity not listed ranks below all of these.
SEVERITY_ORDER: Final = ("critical", "high", "medium", "low", "info")


def severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def top_severity(findings: Iterable[Finding]) -> str | None:
    ranked = sorted((finding.severity for finding in findings), key=severity_rank)
    return ranked[0] if ranked else None


def finding_matches_rule(finding: Finding, rule: str) -> bool:
    """Whether the finding is of this audit rule: its check name or, where findings carry one, its rule id."""
    return rule in (finding.check, str(getattr(finding, "rule_id", "") or ""))


def _number(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def with_totals(timeline: Timeline, metrics: MetricsConfig) -> Timeline:
    """The timeline with the cost of each model call and the run's totals filled in."""
    model_calls = input_tokens = output_tokens = 0
    model_cost = tool_cost = 0.0
    unpriced: set[str] = set()
    entries = []
    for entry in timeline.entries:
        tool_cost += _number(entry.attributes.get(AGENTLEDGER_TOOL_COST, 0))
        if entry.type != "prompt":
            entries.append(entry)
            continue
        used_in, used_out = int(entry.details.get("input_tokens", 0)), int(entry.details.get("output_tokens", 0))
        model = str(entry.details.get("model", ""))
        price = metrics.pricing.get(model)
        if price is None and model:
            unpriced.add(model)
        cost = (used_in * price.input_per_million + used_out * price.output_per_million) / 1e6 if price else 0.0
        model_calls += 1
        input_tokens += used_in
        output_tokens += used_out
        model_cost += cost
        entries.append(entry.model_copy(update={"cost_usd": cost}))
    totals = RunTotals(
        model_calls=model_calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model_cost_usd=model_cost,
        tool_cost_usd=tool_cost,
        cost_usd=model_cost + tool_cost,
        unpriced_models=sorted(unpriced),
    )
    return timeline.model_copy(update={"entries": entries, "totals": totals})
