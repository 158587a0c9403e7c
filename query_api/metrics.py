"""Fleet metrics, blast radius and eval comparisons, aggregated in ClickHouse from spans, writes and
annotations; this module only binds parameters and reshapes the per-group rows into responses."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from agentledger.query_api import queries
from agentledger.query_api.audit_config import SEVERITY_ORDER, AuditConfig
from agentledger.query_api.findings import audit_runs
from agentledger.query_api.metrics_config import MetricsConfig
from agentledger.query_api.metrics_models import (
    BlastRadius,
    BlastRadiusCeilingReport,
    Cost,
    EscalationReason,
    EvalComparison,
    EvalVersionSummary,
    FindingCount,
    GroupBy,
    Latency,
    MetricsGroup,
    MetricsReport,
    PolicyViolation,
    TimeToCorrect,
)
from agentledger.query_api.read_pool import InlineReads

NS_PER_SECOND = 1_000_000_000
DEFAULT_PERIOD_NS = 24 * 3_600 * NS_PER_SECOND
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")


class InvalidQuery(ValueError):
    """A request parameter that cannot be used; its message names the parameter."""


@dataclass(frozen=True)
class Period:
    from_ns: int
    to_ns: int


def parse_instant(name: str, raw: str) -> int:
    """An instant as integer nanoseconds since the epoch, from unix ns digits or RFC 3339 with an offset."""
    text = raw.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(
            f"{name} must be RFC 3339 (e.g. 2026-11-25T10:00:00Z) or unix nanoseconds, not {raw!r}"
        ) from None
    if moment.tzinfo is None:
        raise InvalidQuery(f"{name} must carry a UTC offset (e.g. Z or +02:00): {raw!r}")
    # Whole seconds through integer arithmetic; datetime keeps microseconds only.
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * NS_PER_SECOND + moment.microsecond * 1_000


def parse_period(raw_from: str | None, raw_to: str | None, default_ns: int = DEFAULT_PERIOD_NS) -> Period:
    """[from, to): `to` defaults to now, `from` to `default_ns` before `to`."""
    to_ns = parse_instant("to", raw_to) if raw_to else time.time_ns()
    from_ns = parse_instant("from", raw_from) if raw_from else to_ns - default_ns
    if from_ns >= to_ns:
        raise InvalidQuery(f"from ({from_ns}) must be before to ({to_ns})")
    return Period(from_ns, to_ns)


def parse_window(raw: str) -> int:
    """A window length such as 1h, 15m, 30s or 1d, in seconds."""
    match = _WINDOW.match(raw.strip())
    if match is None:
        raise InvalidQuery(f"window must be a whole number followed by s, m, h or d (e.g. 1h), not {raw!r}")
    return int(match.group(1)) * _WINDOW_UNITS[match.group(2)]


def _price_parameters(config: MetricsConfig) -> dict[str, Any]:
    models, input_prices, output_prices = config.price_arrays()
    return {
        "price_models": models,
        "price_in": input_prices,
        "price_out": output_prices,
        "review_cost_per_hour": config.review_cost_per_hour,
        "outcome_annotation": queries.OUTCOME_ANNOTATION,
        "correction_annotation": queries.CORRECTION_ANNOTATION,
    }


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _seconds(nanoseconds: float) -> float:
    return nanoseconds / NS_PER_SECOND


def _rows(client: Client, sql: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(client.query(sql, parameters=dict(parameters)).named_results())


def _by_group(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row["group_key"])].append(row)
    return grouped


def fleet_metrics(
    client: Client,
    tenant: str,
    config: MetricsConfig,
    period: Period,
    group_by: GroupBy,
    agent: str = "",
    workflow: str = "",
    audit_config: AuditConfig | None = None,
) -> MetricsReport:
    """Runs whose run span started in the period, grouped by agent, workflow or not at all (tenant)."""
    parameters = {
        "tenant": tenant,
        "from_ns": period.from_ns,
        "to_ns": period.to_ns,
        "group_by": group_by,
        "agent": agent,
        "workflow": workflow,
        **_price_parameters(config),
    }
    totals = _rows(client, queries.METRICS_TOTALS, parameters)
    reasons = _by_group(_rows(client, queries.METRICS_ESCALATION_REASONS, parameters))
    violations = _by_group(_rows(client, queries.METRICS_VIOLATIONS, parameters))
    corrections = {str(row["group_key"]): row for row in _rows(client, queries.METRICS_TIME_TO_CORRECT, parameters)}
    findings, audited = _findings_by_group(client, tenant, parameters, audit_config or AuditConfig())
    groups = []
    for row in totals:
        key = str(row["group_key"])
        runs, successes, escalations = int(row["runs"]), int(row["successes"]), int(row["escalations"])
        correction = corrections.get(key)
        corrected = int(correction["corrected"]) if correction else 0
        groups.append(
            MetricsGroup(
                group=tenant if group_by == "tenant" else key,
                runs=runs,
                successes=successes,
                success_rate=_rate(successes, runs),
                escalations=escalations,
                escalation_rate=_rate(escalations, runs),
                escalation_reasons=[EscalationReason(reason=r["reason"], runs=int(r["runs"])) for r in reasons[key]],
                cost=_cost(row, successes),
                latency=Latency(
                    p50_seconds=_seconds(row["latency_p50_ns"]), p95_seconds=_seconds(row["latency_p95_ns"])
                ),
                policy_violations=int(row["violations"]),
                policy_violations_by_rule=[
                    PolicyViolation(
                        policy_id=v["policy_id"],
                        rule_id=v["rule_id"],
                        decision=v["decision"],
                        count=int(v["violations"]),
                    )
                    for v in violations[key]
                ],
                time_to_correct=TimeToCorrect(
                    writes=int(correction["writes"]) if correction else 0,
                    corrected=corrected,
                    p50_seconds=_seconds(correction["p50_ns"]) if correction and corrected else None,
                    mean_seconds=_seconds(correction["mean_ns"]) if correction and corrected else None,
                    max_seconds=_seconds(correction["max_ns"]) if correction and corrected else None,
                ),
                audit_findings_by_rule=findings.get(key, []),
            )
        )
    return MetricsReport(
        tenant=tenant, group_by=group_by, from_ns=period.from_ns, to_ns=period.to_ns, groups=groups,
        audited_runs=audited,
    )  # fmt: skip


# Runs audited per batch (one set of reads each) when counting findings for the metrics.
AUDIT_BATCH_RUNS = 500


def _findings_by_group(
    client: Client, tenant: str, parameters: Mapping[str, Any], config: AuditConfig
) -> tuple[dict[str, list[FindingCount]], int]:
    """Audit findings per group and rule over the window's newest runs (audited in batches), and how many."""
    rows = _rows(client, queries.METRICS_RUN_GROUPS, {**parameters, "audit_max_runs": config.metrics_max_runs})
    groups = {str(row["run_id"]): str(row["group_key"]) for row in rows}
    counts: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(dict)
    run_ids = sorted(groups)
    for start in range(0, len(run_ids), AUDIT_BATCH_RUNS):
        batch = run_ids[start : start + AUDIT_BATCH_RUNS]
        for run_id, (_, _, audit) in audit_runs(InlineReads(client), tenant, batch, config).items():
            seen: set[str] = set()
            for finding in audit.findings:
                tally = counts[groups[run_id]].setdefault((finding.rule, finding.severity), [0, 0])
                tally[0] += 1
                if finding.rule not in seen:
                    tally[1] += 1
                    seen.add(finding.rule)
    by_group = {
        key: sorted(
            (
                FindingCount(rule=rule, severity=severity, findings=n, runs=runs)
                for (rule, severity), (n, runs) in by_rule.items()
            ),
            key=lambda c: (-SEVERITY_ORDER[c.severity], -c.findings, c.rule),
        )
        for key, by_rule in counts.items()
    }
    return by_group, len(run_ids)


def _cost(row: Mapping[str, Any], successes: int) -> Cost:
    total = float(row["total_cost"])
    return Cost(
        model=float(row["model_cost"]),
        tools=float(row["tool_cost"]),
        human_review=float(row["review_cost"]),
        total=total,
        human_review_seconds=_seconds(row["review_ns"]),
        per_successful_outcome=total / successes if successes else None,
        unpriced_models=list(row["unpriced_models"]),
    )


def blast_radius(
    client: Client, tenant: str, config: MetricsConfig, agent_id: str, period: Period, window_seconds: int
) -> BlastRadius:
    """The agent's worst window in the period, and whether it broke the agent's configured ceiling."""
    window_ns = window_seconds * NS_PER_SECOND
    parameters = {
        "tenant": tenant,
        "agent": agent_id,
        "from_ns": period.from_ns,
        "to_ns": period.to_ns,
        "window_ns": window_ns,
        "amount_attribute": config.blast_radius.amount_attribute,
    }
    worst = _rows(client, queries.BLAST_RADIUS_WORST_WINDOW, parameters)
    calls, targets, money = 0, 0, 0.0
    start_ns: int | None = None
    end_ns: int | None = None
    by_system: dict[str, int] = {}
    if worst:
        row = worst[0]
        calls, targets, money = int(row["write_tool_calls"]), int(row["distinct_targets"]), float(row["money_moved"])
        start_ns = period.from_ns + int(row["bucket"]) * window_ns
        end_ns = start_ns + window_ns
        writes = _rows(
            client,
            queries.BLAST_RADIUS_WRITES_BY_SYSTEM,
            {"tenant": tenant, "agent": agent_id, "start_ns": start_ns, "end_ns": end_ns},
        )
        by_system = {str(w["system"]): int(w["writes"]) for w in writes}
    ceiling = config.blast_radius.ceiling_for(agent_id)
    exceeded: list[str] = []
    if ceiling is not None:
        for limit, value, allowed in (
            ("write_tool_calls", calls, ceiling.write_tool_calls),
            ("distinct_targets", targets, ceiling.distinct_targets),
            ("money_moved", money, ceiling.money_moved),
        ):
            if allowed is not None and value > allowed:
                exceeded.append(limit)
    return BlastRadius(
        agent_id=agent_id,
        from_ns=period.from_ns,
        to_ns=period.to_ns,
        window_seconds=window_seconds,
        worst_window_start_ns=start_ns,
        worst_window_end_ns=end_ns,
        write_tool_calls=calls,
        distinct_targets=targets,
        money_moved=money,
        downstream_writes_by_system=by_system,
        ceiling=BlastRadiusCeilingReport(**ceiling.model_dump()) if ceiling is not None else None,
        exceeded=bool(exceeded),
        exceeded_limits=exceeded,
    )


def compare_evals(
    client: Client, tenant: str, config: MetricsConfig, suite: str, baseline: str, candidate: str
) -> EvalComparison | None:
    """Baseline and candidate runs of one eval suite side by side; None when either has no runs."""
    parameters = {
        "tenant": tenant,
        "suite": suite,
        "baseline": baseline,
        "candidate": candidate,
        "group_by": "version",
        "agent": "",
        "workflow": "",
        **_price_parameters(config),
    }
    totals = {str(row["group_key"]): row for row in _rows(client, queries.EVAL_TOTALS, parameters)}
    if baseline not in totals or candidate not in totals:
        return None
    new_violations = _rows(client, queries.EVAL_NEW_VIOLATIONS, parameters)[0]["new_violations"]
    return EvalComparison(
        suite=suite,
        baseline=_version_summary(baseline, totals[baseline]),
        candidate=_version_summary(candidate, totals[candidate]),
        new_policy_violations=int(new_violations),
    )


def _version_summary(version: str, row: Mapping[str, Any]) -> EvalVersionSummary:
    runs, successes = int(row["runs"]), int(row["successes"])
    total = float(row["total_cost"])
    return EvalVersionSummary(
        version=version,
        cases=int(row["cases"]),
        runs=runs,
        successes=successes,
        success_rate=_rate(successes, runs),
        policy_violations=int(row["violations"]),
        cost_per_success=total / successes if successes else None,
        total_cost=total,
        latency_p95_seconds=_seconds(row["latency_p95_ns"]),
        unpriced_models=list(row["unpriced_models"]),
    )
