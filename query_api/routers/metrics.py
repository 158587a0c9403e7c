"""Fleet metrics per agent, workflow or tenant over a time period."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from agentledger.query_api.auth import AUTH_RESPONSES, Reader
from agentledger.query_api.dependencies import ClientDep, ConfigDep
from agentledger.query_api.metrics import InvalidQuery, fleet_metrics, parse_period
from agentledger.query_api.metrics_config import MetricsConfig
from agentledger.query_api.metrics_models import GroupBy, MetricsReport
from agentledger.query_api.models import ErrorBody

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


def get_metrics_config(request: Request) -> MetricsConfig:
    return cast(MetricsConfig, request.app.state.config.metrics)


MetricsConfigDep = Annotated[MetricsConfig, Depends(get_metrics_config)]
FromParam = Annotated[
    str | None,
    Query(alias="from", max_length=64, description="Start (inclusive): RFC 3339 or unix ns; default: to - 24h."),
]
ToParam = Annotated[str | None, Query(max_length=64, description="End (exclusive): RFC 3339 or unix ns; default now.")]

ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    422: {"model": ErrorBody, "description": "A parameter cannot be used (bad time, window or period)."},
}


@router.get("", responses=ERRORS)
def get_metrics(
    client: ClientDep,
    caller: Reader,
    config: MetricsConfigDep,
    api_config: ConfigDep,
    from_: FromParam = None,
    to: ToParam = None,
    group_by: Annotated[GroupBy, Query(description="A row per agent, per workflow, or one for the tenant.")] = "agent",
    agent: Annotated[str, Query(max_length=256, description="Only this agent id.")] = "",
    workflow: Annotated[str, Query(max_length=256, description="Only this workflow (gen_ai.workflow.name).")] = "",
) -> MetricsReport:
    """Runs, success and escalation rates (with reasons), cost per successful outcome, p50/p95 latency,
    policy violations by rule, audit findings by rule and time to correct, for runs whose run span started in
    [from, to)."""
    try:
        period = parse_period(from_, to)
    except InvalidQuery as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
    return fleet_metrics(
        client, caller.tenant, config, period, group_by, agent=agent, workflow=workflow, audit_config=api_config.audit
    )
