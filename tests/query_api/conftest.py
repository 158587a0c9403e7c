"""Fixtures of the query API tests: the app over a fresh chDB database, open (no keys) or keyed."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from agentledger.credentials import Credential, CredentialStore, hash_token
from agentledger.query_api.app import QueryApiConfig, create_app

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
def keyed_api(client: Client) -> TestClient:
    store = CredentialStore(
        Credential(f"{tenant}-{role}", hash_token(token), tenant, role) for token, (tenant, role) in KEYS.items()
    )
    return TestClient(create_app(client, QueryApiConfig(tenant="acme", api_keys=store)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
