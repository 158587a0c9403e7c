"""Per-agent views: the blast radius of an agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from agentledger.query_api.auth import Reader
from agentledger.query_api.dependencies import ClientDep
from agentledger.query_api.metrics import InvalidQuery, blast_radius, parse_period, parse_window
from agentledger.query_api.metrics_models import BlastRadius
from agentledger.query_api.routers.metrics import ERRORS, FromParam, MetricsConfigDep, ToParam

router = APIRouter(prefix="/v1/agents", tags=["agents"])

# Blast radius looks further back than fleet metrics by default: the worst hour of a week.
DEFAULT_BLAST_RADIUS_PERIOD_NS = 7 * 24 * 3_600 * 1_000_000_000


@router.get("/{agent_id}/blast-radius", responses=ERRORS)
def get_blast_radius(
    agent_id: Annotated[str, Path(min_length=1, max_length=256, description="The agent's gen_ai.agent.id.")],
    client: ClientDep,
    caller: Reader,
    config: MetricsConfigDep,
    window: Annotated[str, Query(max_length=16, description="Window length: 1h, 15m, 30s, 1d.")] = "1h",
    from_: FromParam = None,
    to: ToParam = None,
) -> BlastRadius:
    """For the agent's worst window in [from, to) (default: the last 7 days): write tool calls, distinct
    targets, money moved and downstream writes by system, against the agent's configured ceiling."""
    try:
        period = parse_period(from_, to, DEFAULT_BLAST_RADIUS_PERIOD_NS)
        window_seconds = parse_window(window)
    except InvalidQuery as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
    return blast_radius(client, caller.tenant, config, agent_id, period, window_seconds)
