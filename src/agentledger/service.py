"""`agentledger up`: the collector and the query API in one process over one ClickHouse engine (the main
client, and the API's read pool of handles on the same engine: query_api/read_pool.py);
`agentledger collector` and `agentledger api`: one role each, against a ClickHouse server.

`up` is one process because an embedded chDB data folder belongs to exactly one process; the HTTP servers
share an event loop and the engine, gRPC has its own thread pool, and all stop together on
SIGTERM/SIGINT: listeners first (finishing in-flight requests), then the export workers drain the spool,
then the read pool's handles close before the main client.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
import uvicorn
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette
from starlette.types import ASGIApp

from agentledger.collector.auth import Authenticator
from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.exporters.clickhouse import checkpoint_sink_of, resolve_collector_id, signer_of
from agentledger.collector.pipeline import Pipeline, build_pipeline
from agentledger.collector.process_memory import use_returning_arrow_pool
from agentledger.collector.receivers.otlp_grpc import GrpcReceiverError, start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.receivers.otlp_ingest import OtlpIngest
from agentledger.collector.spool import SpoolError
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.credentials import CredentialsError, CredentialStore, load_credentials
from agentledger.ingest.clickhouse import connect, is_embedded, redact_dsn
from agentledger.ingest.embedded_memory import (
    configure_allocator,
    release_library_pages,
    release_library_pages_every,
)
from agentledger.ingest.migrations import migrate
from agentledger.ingest.signing import LinkSigner
from agentledger.phoenix import phoenix_connection, phoenix_exporter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.auth import ROLES
from agentledger.query_api.phoenix_sync import PhoenixSync, run_periodically
from agentledger.query_api.read_pool import ReadPool
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


class Role(enum.Enum):
    """What a process serves: `up` runs both, `agentledger collector` / `agentledger api` one each."""

    COLLECTOR = "collector"
    API = "api"


BOTH_ROLES: Final = frozenset({Role.COLLECTOR, Role.API})


@dataclass
class CollectorRole:
    """Receivers, processors, the spool and exporters over one client: what `agentledger collector` serves."""

    pipeline: Pipeline
    ingest: OtlpIngest
    http_app: ASGIApp | None

    def start_grpc(self, settings: Settings) -> grpc.Server | None:
        grpc_config = settings.collector.receiver.protocols.grpc
        if grpc_config is None:
            return None
        try:
            return start_grpc_server(grpc_config, self.ingest)
        except GrpcReceiverError as error:
            raise ServiceError(str(error)) from error


def build_collector_role(settings: Settings, client: Client) -> CollectorRole:
    """The collector's components for `settings` (its own spool under its data folder); not started."""
    receiver = settings.collector.receiver
    telemetry = CollectorTelemetry()
    try:
        pipeline = build_pipeline(settings.collector, client, telemetry, settings.data_dir / "spool", settings.data_dir)
    except SpoolError as error:
        raise ServiceError(str(error)) from error
    ingest = OtlpIngest(receiver, pipeline, telemetry, Authenticator(receiver.auth, receiver.tenant))
    http_app = create_otlp_http_app(receiver.protocols.http, ingest) if receiver.protocols.http is not None else None
    return CollectorRole(pipeline, ingest, http_app)


def build_api_role(settings: Settings, client: Client, api_keys: CredentialStore | None = None) -> Starlette:
    """The query API for `settings`, reading (and writing tombstones, webhooks) through `client`; the keys
    are loaded from api.keys_file unless given (already loaded, as run_service does before binding)."""
    config = _api_config(settings, api_keys if api_keys is not None else _api_keys(settings))
    return create_app(client, config, ReadPool.beside(client, settings.api.read_workers))


def check_roles(settings: Settings, roles: frozenset[Role]) -> None:
    """A role alone needs a ClickHouse server: an embedded chDB folder belongs to one process, so a
    collector and an API in separate processes could never share it."""
    if roles != BOTH_ROLES and is_embedded(settings.clickhouse_dsn):
        (role,) = roles
        raise ServiceError(
            f"`agentledger {role.value}` needs a ClickHouse server DSN (--dsn http://host:8123 or"
            f" AGENTLEDGER_CLICKHOUSE_DSN), not embedded chDB at {redact_dsn(settings.clickhouse_dsn)}: a chDB"
            " folder belongs to one process, so the other role could not open it; run `agentledger up` for"
            " both roles in one process"
        )


def run_service(
    settings: Settings,
    on_started: Callable[[Settings], None] | None = None,
    roles: frozenset[Role] = BOTH_ROLES,
) -> None:
    """Runs `roles` until SIGTERM/SIGINT; raises ServiceError (or a storage/config error) when it cannot start."""
    check_roles(settings, roles)
    receiver = settings.collector.receiver
    collector_wanted, api_wanted = Role.COLLECTOR in roles, Role.API in roles
    exposed = settings.exposed_without_auth() if collector_wanted else []
    if exposed and not settings.allow_unauthenticated:
        raise ServiceError(
            f"refusing to accept spans without authentication on {', '.join(exposed)}: enable"
            " receivers.otlp.auth with a credentials file, bind to 127.0.0.1, or set"
            " AGENTLEDGER_ALLOW_UNAUTHENTICATED=1 on a network you trust"
        )
    api_keys = _api_keys(settings) if api_wanted else None
    sockets: list[socket.socket] = []
    grpc_server: grpc.Server | None = None
    client = None
    collector: CollectorRole | None = None
    api_app: Starlette | None = None
    try:
        http_socket = None
        if collector_wanted and receiver.protocols.http is not None:
            http_socket = bind(receiver.protocols.http.host, receiver.protocols.http.port, "OTLP/HTTP collector")
            sockets.append(http_socket)
        api_socket = None
        if api_wanted:
            api_socket = bind(settings.api.host, settings.api.port, "query API")
            sockets.append(api_socket)
        embedded = is_embedded(settings.clickhouse_dsn)
        use_returning_arrow_pool()
        if embedded and not configure_allocator(settings.embedded.allocator_dirty_decay_ms):
            logger.warning("storage.embedded.allocator_dirty_decay_ms: chDB was already loaded in this process;"
                           " its allocator keeps the decay it started with")  # fmt: skip
        client = connect(
            settings.clickhouse_dsn, settings.database, settings.cluster, settings.embedded.server_settings()
        )
        # Every role migrates: the DDL is idempotent, and whichever process starts first creates the tables.
        applied = migrate(client, shape=settings.ddl_shape)
        if applied:
            logger.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
        if collector_wanted:
            collector = build_collector_role(settings, client)
            collector.pipeline.start()
        if embedded and settings.embedded.release_library_pages:
            # After migrations and the first queries: the pages touched only while the engine started go.
            release_library_pages()
        stop_sync = threading.Event()
        sync_thread: threading.Thread | None = None
        library_thread = _start_library_release(settings, stop_sync) if embedded else None
        try:
            apps: list[tuple[ASGIApp, socket.socket]] = []
            if collector is not None and collector.http_app is not None and http_socket is not None:
                apps.append((collector.http_app, http_socket))
            if api_socket is not None:
                api_app = build_api_role(settings, client, api_keys)
                apps.append((api_app, api_socket))
                sync_thread = _start_phoenix_sync(settings, api_app.state.phoenix_sync, stop_sync)
            if collector is not None:
                grpc_server = collector.start_grpc(settings)
            _log_start(settings, Authenticator(receiver.auth, receiver.tenant).enabled, api_keys, roles)
            asyncio.run(_serve(apps, settings, on_started))
        finally:
            stop_sync.set()
            if sync_thread is not None:
                sync_thread.join()
            if library_thread is not None:
                library_thread.join()
            if grpc_server is not None:
                grpc_server.stop(GRPC_GRACE_SECONDS).wait()
            if collector is not None:
                collector.pipeline.shutdown(SPOOL_DRAIN_SECONDS)
    finally:
        if api_app is not None:
            api_app.state.reads.close()  # its chDB handles before the main client (query_api/read_pool.py)
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


def _start_library_release(settings: Settings, stop: threading.Event) -> threading.Thread | None:
    """Reclaims chDB's read-only library pages every storage.embedded.release_library_pages_interval_s."""
    interval_s = settings.embedded.release_library_pages_interval_s
    if not settings.embedded.release_library_pages or interval_s == 0:
        return None
    thread = threading.Thread(
        target=release_library_pages_every, args=(interval_s, stop), name="chdb-library-pages", daemon=True
    )
    thread.start()
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
        ddl_shape=settings.ddl_shape if settings.cluster is not None else None,
    )


def _log_start(
    settings: Settings, authenticated: bool, api_keys: CredentialStore | None, roles: frozenset[Role] = BOTH_ROLES
) -> None:
    storage = "embedded chDB" if is_embedded(settings.clickhouse_dsn) else "ClickHouse server"
    if settings.cluster is not None:
        storage += f" cluster {settings.cluster}"
    logger.info("storage: %s at %s, database %s", storage, redact_dsn(settings.clickhouse_dsn), settings.database)
    if Role.COLLECTOR in roles:
        _log_collector(settings, authenticated)
    if Role.API in roles:
        _log_api(settings, api_keys)


def _log_collector(settings: Settings, authenticated: bool) -> None:
    receiver = settings.collector.receiver
    if receiver.protocols.http is not None:
        logger.info("OTLP/HTTP collector: %s/v1/traces", settings.collector_url)
    if receiver.protocols.grpc is not None:
        logger.info("OTLP/gRPC collector: %s", receiver.protocols.grpc.endpoint)
    spool = settings.collector.spool
    if spool.enabled:
        logger.info("spool: %s (fsync %s)", spool.directory or settings.data_dir / "spool", spool.fsync)
    if not authenticated:
        logger.warning("collector authentication is off: anyone who reaches its ports can send spans")


def _log_api(settings: Settings, api_keys: CredentialStore | None) -> None:
    logger.info("query API: %s (OpenAPI at /docs, responder page at %s/ui)", settings.api_url, settings.api_url)
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
    stopped = asyncio.Event()

    def stop() -> None:
        logger.info("stopping: finishing in-flight requests")
        stopped.set()
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
    if not servers:
        # A collector with OTLP/HTTP disabled serves gRPC alone, on its own threads, until signalled.
        await stopped.wait()
