"""The tenant's audit logs: the latest signed checkpoints, and every log checked against them."""

from __future__ import annotations

from fastapi import APIRouter

from agentledger.ingest.checkpoints import latest_checkpoints
from agentledger.query_api.audit_log import load_checkpoints, verify_logs
from agentledger.query_api.auth import AUTH_RESPONSES, Reader
from agentledger.query_api.dependencies import ClientDep, ConfigDep
from agentledger.query_api.models import CheckpointOut, LogVerification

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/checkpoints", responses={**AUTH_RESPONSES})
def checkpoints(caller: Reader, client: ClientDep, config: ConfigDep) -> list[CheckpointOut]:
    """The latest checkpoint of each collector's log for the caller's tenant (from the checkpoint files
    and the table): what an auditor keeps a copy of."""
    latest = latest_checkpoints(load_checkpoints(client, caller.tenant, config.checkpoint_dir))
    return [CheckpointOut(**checkpoint.to_json()) for _, checkpoint in sorted(latest.items())]


@router.get("/log/verify", responses={**AUTH_RESPONSES})
def verify_log(caller: Reader, client: ClientDep, config: ConfigDep) -> LogVerification:
    """Checks every collector's log of the tenant against every checkpoint: gaps, truncation, replayed
    links and root mismatches are named, so even a run erased from every table is detected."""
    return verify_logs(client, caller.tenant, config.audit_public_key_pem, config.checkpoint_dir)
