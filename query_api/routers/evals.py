"""Eval suites: a candidate version's runs against a baseline's, for `agentledger gate`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from agentledger.query_api.auth import AUTH_RESPONSES, Reader
from agentledger.query_api.dependencies import ClientDep
from agentledger.query_api.metrics import compare_evals
from agentledger.query_api.metrics_models import EvalComparison
from agentledger.query_api.models import ErrorBody
from agentledger.query_api.routers.metrics import MetricsConfigDep

router = APIRouter(prefix="/v1/evals", tags=["evals"])

Version = Annotated[str, Query(min_length=1, max_length=256, description="agentledger.eval.version of the runs.")]


@router.get(
    "/compare",
    responses={
        **AUTH_RESPONSES,
        404: {"model": ErrorBody, "description": "The suite has no runs of the baseline or the candidate."},
    },
)
def compare(
    client: ClientDep,
    caller: Reader,
    config: MetricsConfigDep,
    suite: Annotated[str, Query(min_length=1, max_length=256, description="agentledger.eval.suite of the runs.")],
    baseline: Version,
    candidate: Version,
) -> EvalComparison:
    """Success rate, policy violations (and those new on a case), cost per success and p95 latency of
    the candidate's runs of the suite next to the baseline's."""
    comparison = compare_evals(client, caller.tenant, config, suite, baseline, candidate)
    if comparison is None:
        raise HTTPException(
            status_code=404,
            detail=f"suite {suite!r} has no runs of version {baseline!r} or {candidate!r} (agentledger.eval.version)",
        )
    return comparison
