"""Builds the FastAPI query API over one shared ClickHouse client and a pool of readers beside it."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentledger import __version__
from agentledger.ingest.audit_chain import ChainWriter
from agentledger.ingest.checkpoints import CheckpointSink
from agentledger.ingest.clickhouse import first_line
from agentledger.query_api.auth import AccessPolicy
from agentledger.query_api.dependencies import QueryApiConfig
from agentledger.query_api.phoenix_sync import PhoenixSync
from agentledger.query_api.read_pool import ReadPool, Reads
from agentledger.query_api.routers import (
    admin,
    agents,
    audit_log,
    docs,
    evals,
    health,
    holds,
    hooks,
    metrics,
    phoenix,
    runs,
    targets,
    ui,
    writes,
)

__all__ = ["QueryApiConfig", "create_app"]


def create_app(client: Client, config: QueryApiConfig | None = None, reads: Reads | None = None) -> FastAPI:
    """The API over `client`; its requests' independent reads run on `reads` (default: a pool beside the
    client, query_api/read_pool.py), which whoever stops the app closes before the client."""
    app = FastAPI(
        # /docs and /redoc are served by routers/docs.py from an installed package, not from a CDN.
        docs_url=None,
        redoc_url=None,
        title="agentledger query API",
        version=__version__,
        description=(
            "Incident timelines of AI agent runs, joined to what they wrote downstream, with audit checks."
            " When API keys are configured every route but /healthz needs `Authorization: Bearer <key>`;"
            " a key sees only its own tenant."
        ),
    )
    app.state.client = client
    app.state.reads = reads if reads is not None else ReadPool.beside(client)
    app.state.config = config = config or QueryApiConfig()
    app.state.access = AccessPolicy(config.tenant, config.api_keys)
    sink = CheckpointSink(config.checkpoint_dir) if config.checkpoint_dir is not None else None
    app.state.chain_writer = ChainWriter(client, config.audit_collector_id, config.audit_signer, sink)
    app.state.phoenix_sync = (
        PhoenixSync(client, config.tenant, config.phoenix, config.audit) if config.phoenix else None
    )
    routers = (health, runs, writes, targets, hooks, holds, metrics, agents, evals, phoenix, audit_log, admin, ui, docs)
    for module in routers:
        app.include_router(module.router)

    @app.exception_handler(ClickHouseError)
    async def storage_error(_: Request, error: ClickHouseError) -> JSONResponse:
        return JSONResponse({"detail": f"storage error: {first_line(error)}"}, status_code=503)

    return app
