"""Administration of the audit: the tenant's tool catalogue (what each tool does, whatever agents declare)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from agentledger.query_api.audit_config import ToolCatalogue
from agentledger.query_api.auth import AUTH_RESPONSES, Admin, error
from agentledger.query_api.dependencies import ClientDep, ConfigDep
from agentledger.query_api.store.catalogue import StoredCatalogueError, load_catalogue, save_catalogue
from agentledger.query_api.times import rfc3339_nanos

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class CatalogueOut(BaseModel):
    tenant: str
    source: str = Field(description="api (set with PUT), config (api.audit.tool_catalogue) or none.")
    updated_by: str = Field(description="The admin key that set it; empty unless source is api.")
    updated_at: str = Field(description="RFC 3339; empty unless source is api.")
    catalogue: ToolCatalogue


@router.get("/tool-catalogue", responses={**AUTH_RESPONSES, 500: error("The stored catalogue is invalid.")})
def get_tool_catalogue(caller: Admin, client: ClientDep, config: ConfigDep) -> CatalogueOut:
    """The tool catalogue the audit applies to the caller's tenant. Admin only."""
    try:
        stored = load_catalogue(client, caller.tenant)
    except StoredCatalogueError as problem:
        raise HTTPException(status_code=500, detail=str(problem)) from None
    if stored is not None:
        return CatalogueOut(tenant=caller.tenant, source="api", updated_by=stored.updated_by,
                            updated_at=rfc3339_nanos(stored.updated_ns), catalogue=stored.catalogue)  # fmt: skip
    from_file = config.audit.catalogue_for(caller.tenant)
    return CatalogueOut(tenant=caller.tenant, source="config" if from_file.tools else "none", updated_by="",
                        updated_at="", catalogue=from_file)  # fmt: skip


@router.put("/tool-catalogue", responses={**AUTH_RESPONSES})
def put_tool_catalogue(body: ToolCatalogue, caller: Admin, client: ClientDep) -> CatalogueOut:
    """Replaces the caller's tenant's tool catalogue (it then wins over the config file's); every version is
    kept with who set it. Admin only; a bad entry is a 422 naming its field."""
    stored = save_catalogue(client, caller.tenant, body, caller.key_id)
    return CatalogueOut(tenant=caller.tenant, source="api", updated_by=stored.updated_by,
                        updated_at=rfc3339_nanos(stored.updated_ns), catalogue=stored.catalogue)  # fmt: skip
