"""Builds the FastAPI query API over one shared ClickHouse client."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentledger import __version__
from agentledger.ingest.clickhouse import first_line
from agentledger.query_api.metrics_config import MetricsConfig
from agentledger.query_api.routers import agents, evals, health, holds, metrics, runs


@dataclass(frozen=True)
class QueryApiConfig:
    # Tenant whose data an unauthenticated local API serves, until API keys bind requests to tenants.
    tenant: str = "default"
    # Public key (PEM) that audit chain links are signed with; verification checks signatures when set.
    audit_public_key_pem: str | None = None
    # Prices and blast-radius ceilings (api.metrics in the config file).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


def create_app(client: Client, config: QueryApiConfig | None = None) -> FastAPI:
    app = FastAPI(
        title="agentledger query API",
        version=__version__,
        description="Incident timelines of AI agent runs, joined to what they wrote downstream.",
    )
    app.state.client = client
    app.state.config = config or QueryApiConfig()
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(holds.router)
    app.include_router(metrics.router)
    app.include_router(agents.router)
    app.include_router(evals.router)

    @app.exception_handler(ClickHouseError)
    async def storage_error(_: Request, error: ClickHouseError) -> JSONResponse:
        return JSONResponse({"detail": f"storage error: {first_line(error)}"}, status_code=503)

    return app
