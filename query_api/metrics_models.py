"""Response models of the metrics, blast-radius and eval endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

GroupBy = Literal["agent", "workflow", "tenant"]


class Cost(BaseModel):
    """US dollars over the group's runs; `unpriced_models` were used but have no price in the config."""

    model: float
    tools: float
    human_review: float
    total: float
    human_review_seconds: float
    per_successful_outcome: float | None = Field(description="Total cost / successful runs; null without successes.")
    unpriced_models: list[str]


class Latency(BaseModel):
    """Run span durations, exact nearest-rank quantiles, in seconds."""

    p50_seconds: float
    p95_seconds: float


class EscalationReason(BaseModel):
    reason: str
    runs: int


class PolicyViolation(BaseModel):
    policy_id: str
    rule_id: str
    decision: str
    count: int


class FindingCount(BaseModel):
    """Audit findings of one rule over the group's runs."""

    rule: str
    severity: str
    findings: int
    runs: int = Field(description="Runs with at least one finding of the rule.")


class TimeToCorrect(BaseModel):
    """Downstream writes of the runs, and how long the corrected ones stood before their correction."""

    writes: int
    corrected: int
    p50_seconds: float | None
    mean_seconds: float | None
    max_seconds: float | None


class MetricsGroup(BaseModel):
    group: str = Field(description="The agent id or workflow name; the tenant itself when grouped by tenant.")
    runs: int
    successes: int
    success_rate: float
    escalations: int
    escalation_rate: float
    escalation_reasons: list[EscalationReason]
    cost: Cost
    latency: Latency
    policy_violations: int
    policy_violations_by_rule: list[PolicyViolation]
    time_to_correct: TimeToCorrect
    audit_findings_by_rule: list[FindingCount] = Field(
        default_factory=list,
        description="The audit's findings (rules of GET /v1/runs/{id}/audit) by rule, worst first.",
    )


class MetricsReport(BaseModel):
    tenant: str
    group_by: GroupBy
    from_ns: int
    to_ns: int
    groups: list[MetricsGroup]
    audited_runs: int = Field(
        0, description="Runs whose audit findings are counted: the period's newest, at most api.audit.metrics_max_runs."
    )


class BlastRadiusCeilingReport(BaseModel):
    write_tool_calls: int | None
    distinct_targets: int | None
    money_moved: float | None


class BlastRadius(BaseModel):
    agent_id: str
    from_ns: int
    to_ns: int
    window_seconds: int
    worst_window_start_ns: int | None = Field(description="Start of the worst window; null if the agent wrote nothing.")
    worst_window_end_ns: int | None
    write_tool_calls: int
    distinct_targets: int
    money_moved: float
    downstream_writes_by_system: dict[str, int]
    ceiling: BlastRadiusCeilingReport | None
    exceeded: bool
    exceeded_limits: list[str]


class EvalVersionSummary(BaseModel):
    version: str
    cases: int
    runs: int
    successes: int
    success_rate: float
    policy_violations: int
    cost_per_success: float | None
    total_cost: float
    latency_p95_seconds: float
    unpriced_models: list[str]


class EvalComparison(BaseModel):
    suite: str
    baseline: EvalVersionSummary
    candidate: EvalVersionSummary
    new_policy_violations: int = Field(
        description="Candidate violations (case, policy, rule) the baseline did not have on the same case."
    )
