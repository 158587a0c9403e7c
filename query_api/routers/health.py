"""Liveness and storage reachability."""

from __future__ import annotations

from fastapi import APIRouter

from agentledger.query_api.dependencies import ClientDep
from agentledger.query_api.models import ErrorBody, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"model": ErrorBody, "description": "ClickHouse is unreachable."}})
def healthz(client: ClientDep) -> Health:
    client.query("SELECT 1")
    return Health(status="ok", clickhouse="ok")
