"""Webhooks from the systems agents write to (GitHub, Jira), stored as downstream writes.

Authenticated by the delivery's HMAC signature when a secret is configured (deliveries are then
stored under the API's configured tenant), else by an admin API key, else (no keys: local use) openly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from agentledger.query_api.auth import (
    ADMIN,
    AUTH_RESPONSES,
    BearerCredentials,
    access_policy,
    authenticate,
    authorize,
    error,
    unauthorized,
)
from agentledger.query_api.dependencies import ClientDep, ConfigDep
from agentledger.query_api.models import HookAccepted
from agentledger.query_api.webhooks import Delivery, PayloadError, github_delivery, jira_delivery, signature_valid
from agentledger.query_api.writes import insert_writes

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])

# Larger deliveries are refused before parsing (GitHub caps payloads at 25 MB; pushes are far smaller).
MAX_BODY_BYTES = 5 * 1024 * 1024

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: error("The body is not JSON, or not the webhook payload the event names (the detail says which field)."),
    401: error("The signature is missing or does not match the configured secret, and no admin API key was sent."),
    413: error("The delivery is larger than 5 MiB."),
}
_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


def _tenant(
    request: Request, credentials: BearerCredentials, secret: str, body: bytes, signature: str | None, header: str
) -> str:
    policy = access_policy(request)
    if secret and signature_valid(secret, body, signature):
        return policy.default_tenant
    if credentials is None and (secret or not policy.open):
        raise unauthorized(
            f"the {header} signature is missing or does not match the configured secret"
            if secret
            else "webhooks need a configured secret or an admin API key"
        )
    return authorize(authenticate(policy, credentials), ADMIN).tenant


async def _json_body(request: Request) -> tuple[bytes, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail="the delivery is larger than 5 MiB")
    text = body
    # GitHub's other content type: the JSON sits in the `payload` form field.
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", errors="replace"))
        text = form.get("payload", [""])[0].encode()
    try:
        return body, json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(status_code=400, detail="the body is not JSON") from None


async def _store(client: ClientDep, tenant: str, parse: Callable[[], Delivery]) -> HookAccepted:
    try:
        delivery = parse()
    except PayloadError as problem:
        raise HTTPException(status_code=400, detail=str(problem)) from None
    # The insert blocks; keep it off the event loop the collector shares.
    stored = await run_in_threadpool(insert_writes, client, tenant, delivery.writes)
    return HookAccepted(accepted=stored, ignored=delivery.ignored, detail=delivery.detail)


@router.post("/github", status_code=202, responses=_RESPONSES, openapi_extra=_BODY)
async def github_hook(
    request: Request,
    client: ClientDep,
    config: ConfigDep,
    credentials: BearerCredentials,
    x_github_event: Annotated[str, Header(max_length=64, description="pull_request, push or ping.")],
    x_hub_signature_256: Annotated[str | None, Header(max_length=128)] = None,
) -> HookAccepted:
    """A GitHub `pull_request` or `push` delivery; the run id comes from an `Agent-Run-Id:` trailer or label."""
    body, payload = await _json_body(request)
    tenant = _tenant(
        request, credentials, config.github_webhook_secret, body, x_hub_signature_256, "X-Hub-Signature-256"
    )
    return await _store(client, tenant, lambda: github_delivery(x_github_event, payload))


@router.post("/jira", status_code=202, responses=_RESPONSES, openapi_extra=_BODY)
async def jira_hook(
    request: Request,
    client: ClientDep,
    config: ConfigDep,
    credentials: BearerCredentials,
    x_hub_signature: Annotated[str | None, Header(max_length=128)] = None,
) -> HookAccepted:
    """A Jira issue created/updated/deleted delivery; the run id comes from the configured custom field."""
    body, payload = await _json_body(request)
    tenant = _tenant(request, credentials, config.jira_webhook_secret, body, x_hub_signature, "X-Hub-Signature")
    return await _store(client, tenant, lambda: jira_delivery(payload, config.jira_run_id_field))
