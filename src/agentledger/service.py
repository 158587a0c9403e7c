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
from pathlib import Path

import grpc
import uvicorn
from starlette.types import ASGIApp

from agentledger.collector.auth import Authenticator
from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.exporters.clickhouse import checkpoint_sink_of, resolve_collector_id, signer_of
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.receivers.otlp_grpc import GrpcReceiverError, start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.receivers.otlp_ingest import OtlpIngest
from agentledger.collector.spool import SpoolError
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.credentials import CredentialsError, CredentialStore, load_credentials
from agentledger.ingest.clickhouse import connect, is_embedded, redact_dsn
from agentledger.ingest.migrations import migrate
from agentledger.ingest.signing import LinkSigner
from agentledger.phoenix import phoenix_connection, phoenix_exporter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.auth import ROLES
from agentledger.query_api.phoenix_sync import PhoenixSync, run_periodically
from agentledger.settings import ENV_API_KEYS_FILE, Settings, is_loopback

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
    api_keys = _api_keys(settings)
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
        try:
            pipeline = build_pipeline(
                settings.collector, client, telemetry, settings.data_dir / "spool", settings.data_dir
            )
        except SpoolError as error:
            raise ServiceError(str(error)) from error
        pipeline.start()
        stop_sync = threading.Event()
        sync_thread: threading.Thread | None = None
        try:
            ingest = OtlpIngest(receiver, pipeline, telemetry, authenticator)
            apps: list[tuple[ASGIApp, socket.socket]] = []
            if receiver.protocols.http is not None:
                apps.append((create_otlp_http_app(receiver.protocols.http, ingest), sockets[0]))
            api_app = create_app(client, _api_config(settings, api_keys))
            apps.append((api_app, api_socket))
            sync_thread = _start_phoenix_sync(settings, api_app.state.phoenix_sync, stop_sync)
            if receiver.protocols.grpc is not None:
                try:
                    grpc_server = start_grpc_server(receiver.protocols.grpc, ingest)
                except GrpcReceiverError as error:
                    raise ServiceError(str(error)) from error
            _log_start(settings, authenticator.enabled, api_keys)
            asyncio.run(_serve(apps, settings, on_started))
        finally:
            stop_sync.set()
            if sync_thread is not None:
                sync_thread.join()
            if grpc_server is not None:
                grpc_server.stop(GRPC_GRACE_SECONDS).wait()
            pipeline.shutdown(SPOOL_DRAIN_SECONDS)
    finally:
        if client is not None:
            client.close()
        for sock in sockets:
            sock.close()
    logger.info("stopped")


def _start_phoenix_sync(settings: Settings, sync: PhoenixSync | None, stop: threading.Event) -> threading.Thread | None:
    """The annotation sync in the background, every exporters.phoenix.sync.interval_s, when enabled."""
    config = phoenix_exporter(settings)
    if sync is None or config is None or not config.sync.enabled:
        return None
    thread = threading.Thread(
        target=run_periodically, args=(sync, config.sync.interval_s, stop), name="phoenix-sync", daemon=True
    )
    thread.start()
    logger.info("Phoenix: exporting to %s (project %s), annotation sync every %.0f s",
                config.endpoint, config.project, config.sync.interval_s)  # fmt: skip
    return thread


def clickhouse_exporter(settings: Settings) -> ClickHouseExporterConfig | None:
    for component_id in settings.collector.pipeline.exporters:
        config = settings.collector.exporters[component_id]
        if isinstance(config, ClickHouseExporterConfig):
            return config
    return None


def audit_public_key(settings: Settings) -> str | None:
    """The public half of the ClickHouse exporter's signing key, so the API checks signatures."""
    config = clickhouse_exporter(settings)
    if config is not None and config.signing_key_file is not None:
        return LinkSigner.from_file(config.signing_key_file).public_key_pem()
    return None


def audit_log_settings(settings: Settings) -> tuple[LinkSigner | None, str, Path | None]:
    """The API's signer, log id and checkpoint sink: the ClickHouse exporter's key and sink, and a log of
    its own named after the collector's ("<collector id>.api"), as `up` runs both in one process."""
    config = clickhouse_exporter(settings)
    if config is None:
        return None, "api", None
    sink = checkpoint_sink_of(config, settings.data_dir)
    collector_id = resolve_collector_id(config, settings.data_dir)
    return signer_of(config), f"{collector_id}.api", sink.directory if sink is not None else None


def _api_keys(settings: Settings) -> CredentialStore | None:
    keys_file = settings.api.keys_file
    if keys_file is None:
        if not is_loopback(settings.api.host):
            raise ServiceError(
                f"refusing to serve the query API on {settings.api.host} without API keys, since anyone who can"
                f" reach it could read every run; pass --api-keys-file (or {ENV_API_KEYS_FILE}), or bind 127.0.0.1"
            )
        return None
    try:
        return load_credentials(keys_file, ROLES)
    except CredentialsError as error:
        raise ServiceError(str(error)) from error


def _api_config(settings: Settings, api_keys: CredentialStore | None) -> QueryApiConfig:
    signer, api_log_id, checkpoint_dir = audit_log_settings(settings)
    return QueryApiConfig(
        tenant=settings.api.tenant,
        api_keys=api_keys,
        github_webhook_secret=settings.api.github_webhook_secret,
        jira_webhook_secret=settings.api.jira_webhook_secret,
        jira_run_id_field=settings.api.jira_run_id_field,
        audit_public_key_pem=audit_public_key(settings),
        audit_signer=signer,
        audit_collector_id=api_log_id,
        checkpoint_dir=checkpoint_dir,
        phoenix=phoenix_connection(settings),
        metrics=settings.api.metrics,
        audit=settings.api.audit,
    )


def _log_start(settings: Settings, authenticated: bool, api_keys: CredentialStore | None) -> None:
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
    logger.info("query API: %s (OpenAPI at /docs, responder page at %s/ui)", settings.api_url, settings.api_url)
    if not authenticated:
        logger.warning("collector authentication is off: anyone who reaches its ports can send spans")
    if api_keys is None:
        logger.warning(
            "query API authentication is off (no API keys file): it serves tenant %r to any local client",
            settings.api.tenant,
        )
    else:
        logger.info("query API: %d API key(s) from %s", len(api_keys), settings.api.keys_file)


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
