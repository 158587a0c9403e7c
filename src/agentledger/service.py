"""`agentledger up`: the collector and the query API in one process over one ClickHouse client.

One process, because an embedded chDB data folder belongs to exactly one process; both servers share
an event loop and the client, and stop together on SIGTERM/SIGINT after finishing in-flight requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from agentledger.collector.config import CollectorConfig, OtlpHttpReceiverConfig
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.credentials import CredentialsError, CredentialStore, load_credentials
from agentledger.ingest.clickhouse import connect, is_embedded, redact_dsn
from agentledger.ingest.migrations import migrate
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.auth import ROLES
from agentledger.settings import ENV_API_KEYS_FILE, Settings, is_loopback

logger = logging.getLogger("agentledger")


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
    """Runs until SIGTERM/SIGINT; raises ServiceError when it cannot start."""
    api_keys = _api_keys(settings)
    collector_socket = bind(settings.host, settings.otlp_http_port, "OTLP/HTTP collector")
    api_socket = bind(settings.host, settings.api_port, "query API")
    client = connect(settings.clickhouse_dsn, settings.database)
    try:
        applied = migrate(client)
        if applied:
            logger.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
        config = CollectorConfig(
            http=OtlpHttpReceiverConfig(host=settings.host, port=settings.otlp_http_port, tenant=settings.tenant)
        )
        pipeline = build_pipeline(config.pipeline, client)
        telemetry = CollectorTelemetry()
        apps: list[tuple[ASGIApp, socket.socket]] = [
            (create_otlp_http_app(config.http, pipeline, telemetry), collector_socket),
            (create_app(client, _api_config(settings, api_keys)), api_socket),
        ]
        storage = "embedded chDB" if is_embedded(settings.clickhouse_dsn) else "ClickHouse server"
        logger.info("storage: %s at %s, database %s", storage, redact_dsn(settings.clickhouse_dsn), settings.database)
        logger.info("OTLP/HTTP collector: %s/v1/traces", settings.collector_url)
        logger.info("query API: %s (OpenAPI at /docs, responder page at %s/ui)", settings.api_url, settings.api_url)
        if api_keys is None:
            logger.warning(
                "query API authentication is off (no API keys file): it serves tenant %r to any local client",
                settings.tenant,
            )
        else:
            logger.info("query API: %d API key(s) from %s", len(api_keys), settings.api_keys_file)
        logger.warning("collector authentication is off: any client that reaches its port can send spans")
        try:
            asyncio.run(_serve(apps, settings, on_started))
        finally:
            pipeline.shutdown()
    finally:
        client.close()
        collector_socket.close()
        api_socket.close()
    logger.info("stopped")


def _api_keys(settings: Settings) -> CredentialStore | None:
    if settings.api_keys_file is None:
        if not is_loopback(settings.host):
            raise ServiceError(
                f"refusing to serve the query API on {settings.host} without API keys, since anyone who can reach"
                f" it could read every run; pass --api-keys-file (or {ENV_API_KEYS_FILE}), or bind 127.0.0.1"
            )
        return None
    try:
        return load_credentials(settings.api_keys_file, ROLES)
    except CredentialsError as error:
        raise ServiceError(str(error)) from error


def _api_config(settings: Settings, api_keys: CredentialStore | None) -> QueryApiConfig:
    return QueryApiConfig(
        tenant=settings.tenant,
        api_keys=api_keys,
        github_webhook_secret=settings.github_webhook_secret,
        jira_webhook_secret=settings.jira_webhook_secret,
        jira_run_id_field=settings.jira_run_id_field,
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
