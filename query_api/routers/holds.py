"""Legal holds: keep runs or agents' spans past retention. Placing and releasing is for admins."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Path

from agentledger.query_api.auth import AUTH_RESPONSES, Admin, Reader, error
from agentledger.query_api.dependencies import ClientDep, ConfigDep
from agentledger.query_api.holds import active_holds, place_hold, release_hold
from agentledger.query_api.models import Hold, HoldRequest

router = APIRouter(prefix="/v1/holds", tags=["holds"])

HoldId = Annotated[str, Path(min_length=1, max_length=64)]
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {404: error("No such hold for the caller's tenant.")}


@router.get("", responses={**AUTH_RESPONSES})
def list_holds(caller: Reader, client: ClientDep) -> list[Hold]:
    """Active holds of the caller's tenant."""
    return active_holds(client, caller.tenant)


@router.post("", status_code=201, responses={**AUTH_RESPONSES})
def create_hold(request: HoldRequest, caller: Admin, client: ClientDep, config: ConfigDep) -> Hold:
    """Places a hold: the spans it covers are no longer pruned by retention and cannot be deleted."""
    return place_hold(
        client, caller.tenant, request.scope, request.target, request.reason, caller.key_id, config.ddl_shape
    )


@router.post("/{hold_id}/release", responses={**AUTH_RESPONSES, **_NOT_FOUND})
def release(hold_id: HoldId, caller: Admin, client: ClientDep, config: ConfigDep) -> Hold:
    hold = release_hold(client, caller.tenant, hold_id, config.ddl_shape)
    if hold is None:
        raise HTTPException(status_code=404, detail=f"no hold with id {hold_id!r}")
    return hold
