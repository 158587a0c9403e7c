"""Legal holds: keep runs or agents' spans past retention."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from agentledger.query_api.dependencies import ClientDep, TenantDep
from agentledger.query_api.holds import active_holds, place_hold, release_hold
from agentledger.query_api.models import ErrorBody, Hold, HoldRequest

router = APIRouter(prefix="/v1/holds", tags=["holds"])

HoldId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("", responses={503: {"model": ErrorBody, "description": "ClickHouse is unreachable."}})
def list_holds(client: ClientDep, tenant: TenantDep) -> list[Hold]:
    """Active holds of the caller's tenant."""
    return active_holds(client, tenant)


@router.post("", status_code=201, responses={503: {"model": ErrorBody, "description": "ClickHouse is unreachable."}})
def create_hold(request: HoldRequest, client: ClientDep, tenant: TenantDep) -> Hold:
    """Places a hold: the spans it covers are no longer pruned by retention and cannot be deleted."""
    return place_hold(client, tenant, request.scope, request.target, request.reason, placed_by=tenant)


@router.post(
    "/{hold_id}/release",
    responses={
        404: {"model": ErrorBody, "description": "No such hold for the caller's tenant."},
        503: {"model": ErrorBody, "description": "ClickHouse is unreachable."},
    },
)
def release(hold_id: HoldId, client: ClientDep, tenant: TenantDep) -> Hold:
    hold = release_hold(client, tenant, hold_id)
    if hold is None:
        raise HTTPException(status_code=404, detail=f"no hold with id {hold_id!r}")
    return hold
