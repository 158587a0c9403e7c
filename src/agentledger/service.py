"""`agentledger up`: the collector and the query API in one process over one ClickHouse client.

One process, because an embedded chDB data folder belongs to exactly one process; the HTTP servers
share an event loop and the client, gRPC has its own thread pool, and all stop together on
SIGTERM/SIGINT: listeners first (finishing in-flight requests), then the export workers drain the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import grpc
import uvicorn
from starlette.types import ASGIApp

from agentledger.collector.auth import Authenticator
from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.receivers.otlp_grpc import GrpcReceiverError, start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.receivers.otlp_ingest import OtlpIngest
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.clickhouse import connect, is_embedded, redact_dsn
from agentledger.ingest.migrations import migrate
from agentledger.ingest.signing import LinkSigner
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.settings import Settings

logger = logging.getLogger("agentledger")

GRPC_GRACE_SECONDS = 10.0
SPOOL_DRAIN_SECONDS = 10.0


class ServiceError(RuntimeError):
    """The service cannot start; the message says why in a sentence."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the service, which stops all servers at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServiceError(f"cannot listen for the {what} on {host}:{port}: {error.strerror}") from error
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run_service(settings: Settings, on_started: Callable[[Settings], None] | None = None) -> None:
    """Runs until SIGTERM/SIGINT; raises ServiceError (or a storage/config error) when it cannot start."""
    exposed = settings.exposed_without_auth()
    if exposed and not settings.allow_unauthenticated:
        raise ServiceError(
            f"refusing to accept spans without authentication on {', '.join(exposed)}: enable"
            " receivers.otlp.auth with a credentials file, bind to 127.0.0.1, or set"
            " AGENTLEDGER_ALLOW_UNAUTHENTICATED=1 on a network you trust"
        )
    receiver = settings.collector.receiver
    authenticator = Authenticator(receiver.auth, receiver.tenant)
    sockets: list[socket.socket] = []
    grpc_server: grpc.Server | None = None
    client = None
    try:
        if receiver.protocols.http is not None:
            sockets.append(bind(receiver.protocols.http.host, receiver.protocols.http.port, "OTLP/HTTP collector"))
        api_socket = bind(settings.api.host, settings.api.port, "query API")
        sockets.append(api_socket)
        client = connect(settings.clickhouse_dsn, settings.database)
        applied = migrate(client)
        if applied:
            logger.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
        telemetry = CollectorTelemetry()
        pipeline = build_pipeline(settings.collector, client, telemetry, settings.data_dir / "spool")
        pipeline.start()
        try:
            ingest = OtlpIngest(receiver, pipeline, telemetry, authenticator)
            apps: list[tuple[ASGIApp, socket.socket]] = []
            if receiver.protocols.http is not None:
                apps.append((create_otlp_http_app(receiver.protocols.http, ingest), sockets[0]))
            api_config = QueryApiConfig(settings.api.tenant, audit_public_key(settings), settings.api.metrics)
            apps.append((create_app(client, api_config), api_socket))
            if receiver.protocols.grpc is not None:
                try:
                    grpc_server = start_grpc_server(receiver.protocols.grpc, ingest)
                except GrpcReceiverError as error:
                    raise ServiceError(str(error)) from error
            _log_start(settings, authenticator.enabled)
            asyncio.run(_serve(apps, settings, on_started))
        finally:
            if grpc_server is not None:
                grpc_server.stop(GRPC_GRACE_SECONDS).wait()
            pipeline.shutdown(SPOOL_DRAIN_SECONDS)
    finally:
        if client is not None:
            client.close()
        for sock in sockets:
            sock.close()
    logger.info("stopped")


def audit_public_key(settings: Settings) -> str | None:
    """The public half of the ClickHouse exporter's signing key, so the API checks signatures."""
    for component_id in settings.collector.pipeline.exporters:
        config = settings.collector.exporters[component_id]
        if isinstance(config, ClickHouseExporterConfig) and config.signing_key_file is not None:
            return LinkSigner.from_file(config.signing_key_file).public_key_pem()
    return None


def _log_start(settings: Settings, authenticated: bool) -> None:
    receiver = settings.collector.receiver
    storage = "embedded chDB" if is_embedded(settings.clickhouse_dsn) else "ClickHouse server"
    logger.info("storage: %s at %s, database %s", storage, redact_dsn(settings.clickhouse_dsn), settings.database)
    if receiver.protocols.http is not None:
        logger.info("OTLP/HTTP collector: %s/v1/traces", settings.collector_url)
    if receiver.protocols.grpc is not None:
        logger.info("OTLP/gRPC collector: %s", receiver.protocols.grpc.endpoint)
    spool = settings.collector.spool
    if spool.enabled:
        logger.info("spool: %s (fsync %s)", spool.directory or settings.data_dir / "spool", spool.fsync)
    logger.info("query API: %s (OpenAPI at /docs)", settings.api_url)
    if not authenticated:
        logger.warning("collector authentication is off: anyone who reaches its ports can send spans")
    logger.warning(
        "query API authentication is off: anyone who reaches its port can read tenant %r", settings.api.tenant
    )


async def _serve(
    apps: list[tuple[ASGIApp, socket.socket]],
    settings: Settings,
    on_started: Callable[[Settings], None] | None,
) -> None:
    servers = [
        (_Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)), sock)
        for app, sock in apps
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        logger.info("stopping: finishing in-flight requests")
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.05)
    else:
        logger.info("ready")
        if on_started is not None:
            # In a thread: the callback may talk to these very servers.
            threading.Thread(target=on_started, args=(settings,), name="on-started", daemon=True).start()
    await asyncio.gather(*tasks)
