"""Tool catalogues set through the admin API (table tool_catalogues, migration 0009)."""

from __future__ import annotations

from dataclasses import dataclass
from time import time_ns

from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from agentledger.query_api import queries
from agentledger.query_api.audit_config import ToolCatalogue, catalogue_json


class StoredCatalogueError(ValueError):
    """A stored catalogue no longer validates (written by another version); the message says why."""


@dataclass(frozen=True)
class StoredCatalogue:
    catalogue: ToolCatalogue
    updated_by: str
    updated_ns: int


def load_catalogue(client: Client, tenant: str) -> StoredCatalogue | None:
    rows = list(client.query(queries.TOOL_CATALOGUE, parameters={"tenant": tenant}).named_results())
    if not rows:
        return None
    row = rows[0]
    try:
        catalogue = ToolCatalogue.model_validate_json(str(row["catalogue"]))
    except ValidationError as error:
        raise StoredCatalogueError(f"the stored tool catalogue of tenant {tenant!r} is invalid: {error}") from None
    return StoredCatalogue(catalogue, str(row["updated_by"]), int(row["updated_ns"]))


def save_catalogue(client: Client, tenant: str, catalogue: ToolCatalogue, updated_by: str) -> StoredCatalogue:
    now = time_ns()
    client.insert(
        "tool_catalogues",
        [[tenant, now, updated_by, catalogue_json(catalogue)]],
        column_names=["tenant", "updated_at", "updated_by", "catalogue"],
    )
    return StoredCatalogue(catalogue, updated_by, now)
