"""Builds the FastAPI query API over one shared ClickHouse client."""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentledger import __version__
from agentledger.ingest.clickhouse import first_line
from agentledger.query_api.phoenix_sync import PhoenixConnection, PhoenixSync
from agentledger.query_api.routers import health, holds, phoenix, runs


@dataclass(frozen=True)
class QueryApiConfig:
    # Tenant whose data an unauthenticated local API serves, until API keys bind requests to tenants.
    tenant: str = "default"
    # Public key (PEM) that audit chain links are signed with; verification checks signatures when set.
    audit_public_key_pem: str | None = None
    # Phoenix (from the phoenix exporter's config): timeline links and the annotation sync; None: neither.
    phoenix: PhoenixConnection | None = None


def create_app(client: Client, config: QueryApiConfig | None = None) -> FastAPI:
    app = FastAPI(
        title="agentledger query API",
        version=__version__,
        description="Incident timelines of AI agent runs, joined to what they wrote downstream.",
    )
    app.state.client = client
    app.state.config = config = config or QueryApiConfig()
    app.state.phoenix_sync = PhoenixSync(client, config.tenant, config.phoenix) if config.phoenix else None
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(holds.router)
    app.include_router(phoenix.router)

    @app.exception_handler(ClickHouseError)
    async def storage_error(_: Request, error: ClickHouseError) -> JSONResponse:
        return JSONResponse({"detail": f"storage error: {first_line(error)}"}, status_code=503)

    return app
