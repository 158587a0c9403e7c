"""Arize Phoenix: run the annotation sync now (it also runs in the background of `agentledger up`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from agentledger.query_api.auth import AUTH_RESPONSES, Admin
from agentledger.query_api.dependencies import PhoenixSyncDep
from agentledger.query_api.models import ErrorBody
from agentledger.query_api.phoenix_sync import PhoenixUnavailable, SyncReport

router = APIRouter(prefix="/v1/phoenix", tags=["phoenix"])


@router.post(
    "/sync",
    responses={
        **AUTH_RESPONSES,
        404: {"model": ErrorBody, "description": "No Phoenix is configured for the caller's tenant."},
        502: {"model": ErrorBody, "description": "Phoenix is unreachable or refused a request."},
    },
)
def sync(caller: Admin, phoenix: PhoenixSyncDep) -> SyncReport:
    """Pulls Phoenix span annotations into the audit record (idempotent: a repeat adds nothing) and pushes
    each run's verification result and findings to Phoenix as CODE annotations."""
    if phoenix is None:
        raise HTTPException(status_code=404, detail="no Phoenix is configured: add a phoenix exporter to the pipeline")
    if phoenix.tenant != caller.tenant:  # the sync serves the collector's own tenant only
        raise HTTPException(status_code=404, detail=f"no Phoenix is configured for tenant {caller.tenant!r}")
    try:
        return phoenix.run_once()
    except PhoenixUnavailable as error:
        raise HTTPException(status_code=502, detail=str(error)) from error
