"""Agent runs: the incident timeline of one run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from agentledger.query_api.dependencies import ClientDep, PhoenixSyncDep, PublicKeyDep, TenantDep
from agentledger.query_api.evidence import build_bundle
from agentledger.query_api.holds import HoldActive, delete_run
from agentledger.query_api.models import Deletion, ErrorBody, Timeline, Verification
from agentledger.query_api.timeline import load_timeline
from agentledger.query_api.verify import verify_run

router = APIRouter(prefix="/v1/runs", tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=256, description="The agent.run.id of the run.")]


@router.get(
    "/{run_id}/timeline",
    responses={
        404: {"model": ErrorBody, "description": "No run with this id for the caller's tenant."},
        503: {"model": ErrorBody, "description": "ClickHouse is unreachable."},
    },
)
def get_timeline(run_id: RunId, client: ClientDep, tenant: TenantDep, phoenix: PhoenixSyncDep) -> Timeline:
    """Every span of the run across its traces, in time order, typed by the conventions, with reviewers'
    annotations and (when Phoenix is configured) a link to each span in Phoenix."""
    timeline = load_timeline(client, tenant, run_id, phoenix.connection.span_url if phoenix is not None else None)
    if timeline is None:
        raise HTTPException(status_code=404, detail=f"no run with id {run_id!r}")
    return timeline


@router.get(
    "/{run_id}/verify",
    responses={
        404: {"model": ErrorBody, "description": "No run with this id for the caller's tenant."},
        503: {"model": ErrorBody, "description": "ClickHouse is unreachable."},
    },
)
def verify(run_id: RunId, client: ClientDep, tenant: TenantDep, public_key: PublicKeyDep) -> Verification:
    """Recomputes the run's audit hash chain from the stored spans: intact, or which spans were altered,
    removed or inserted out of band, and since which link."""
    result = verify_run(client, tenant, run_id, public_key_pem=public_key)
    if result is None:
        raise HTTPException(status_code=404, detail=f"no run with id {run_id!r}")
    return result


@router.get(
    "/{run_id}/evidence",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The evidence bundle (zip)."},
        404: {"model": ErrorBody, "description": "No run with this id for the caller's tenant."},
        503: {"model": ErrorBody, "description": "ClickHouse is unreachable."},
    },
)
def evidence(run_id: RunId, client: ClientDep, tenant: TenantDep, public_key: PublicKeyDep) -> Response:
    """One self-contained file for an auditor: spans, chain, timeline and verification, with a README on
    checking it offline (schema/AUDIT_CHAIN.md)."""
    bundle = build_bundle(client, tenant, run_id, public_key)
    if bundle is None:
        raise HTTPException(status_code=404, detail=f"no run with id {run_id!r}")
    filename = f"agentledger-evidence-{run_id}.zip".replace('"', "")
    return Response(bundle, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


@router.delete(
    "/{run_id}",
    responses={
        404: {"model": ErrorBody, "description": "No run with this id for the caller's tenant."},
        409: {"model": ErrorBody, "description": "A legal hold covers the run."},
        503: {"model": ErrorBody, "description": "ClickHouse is unreachable."},
    },
)
def delete(
    run_id: RunId,
    client: ClientDep,
    tenant: TenantDep,
    reason: Annotated[str, Query(min_length=1, max_length=2000, description="Why the run is deleted.")],
) -> Deletion:
    """Deletes the run's spans, after writing a tombstone into its audit chain, so it verifies as deleted
    on request rather than as tampered. Refused while a legal hold covers the run."""
    try:
        deletion = delete_run(client, tenant, run_id, requested_by=tenant, reason=reason)
    except HoldActive as error:
        raise HTTPException(status_code=409, detail=str(error)) from error
    if deletion is None:
        raise HTTPException(status_code=404, detail=f"no run with id {run_id!r}")
    return deletion
