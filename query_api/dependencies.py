"""FastAPI dependencies shared by the routers: the ClickHouse client and the caller's tenant."""

from __future__ import annotations

from typing import Annotated, cast

from clickhouse_connect.driver.client import Client
from fastapi import Depends, Request

from agentledger.query_api.phoenix_sync import PhoenixSync


def get_client(request: Request) -> Client:
    return cast(Client, request.app.state.client)


def get_tenant(request: Request) -> str:
    return cast(str, request.app.state.config.tenant)


ClientDep = Annotated[Client, Depends(get_client)]
TenantDep = Annotated[str, Depends(get_tenant)]


def get_public_key(request: Request) -> str | None:
    return cast("str | None", request.app.state.config.audit_public_key_pem)


PublicKeyDep = Annotated["str | None", Depends(get_public_key)]


def get_phoenix_sync(request: Request) -> PhoenixSync | None:
    return cast("PhoenixSync | None", request.app.state.phoenix_sync)


PhoenixSyncDep = Annotated["PhoenixSync | None", Depends(get_phoenix_sync)]
