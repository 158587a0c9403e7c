"""Fixtures of the query API tests: the app over a fresh chDB database, open (no keys) or keyed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.credentials import Credential, CredentialStore, hash_token
from agentledger.query_api.app import QueryApiConfig, create_app
from tests.conftest import free_port

# token -> (tenant, role); ids are the role names prefixed by the tenant.
KEYS = {
    "al_acme_responder": ("acme", "responder"),
    "al_acme_reviewer": ("acme", "reviewer"),
    "al_acme_admin": ("acme", "admin"),
    "al_globex_admin": ("globex", "admin"),
}


@pytest.fixture
def api(client: Client) -> TestClient:
    return TestClient(create_app(client, QueryApiConfig(tenant="default")))


@pytest.fixture
def served_api(client: Client) -> Iterator[httpx.Client]:
    """The open app behind a real uvicorn server: what a client sends is what it receives (Starlette's
    TestClient decodes percent-escapes in paths twice, and never checks the response headers)."""
    config = uvicorn.Config(create_app(client, QueryApiConfig(tenant="default")), port=free_port(), log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=30) as http:
        yield http
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def keyed_api(client: Client) -> TestClient:
    store = CredentialStore(
        Credential(f"{tenant}-{role}", hash_token(token), tenant, role) for token, (tenant, role) in KEYS.items()
    )
    return TestClient(create_app(client, QueryApiConfig(tenant="acme", api_keys=store)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
