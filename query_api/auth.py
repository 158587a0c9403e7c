"""Who is calling the query API: bearer API keys bound to one tenant and one role, checked per route.

Without a keys file the API serves its configured tenant openly (loopback only; `up` refuses other
addresses), and every caller counts as an admin of that tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, cast

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentledger.credentials import CredentialStore
from agentledger.query_api.models import ErrorBody

# Ordered: each role can do what the ones before it can.
ROLES: Final = ("responder", "reviewer", "admin")
RESPONDER, REVIEWER, ADMIN = ROLES

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer al_...`.")


@dataclass(frozen=True)
class Caller:
    tenant: str
    role: str
    key_id: str


@dataclass(frozen=True)
class AccessPolicy:
    default_tenant: str
    # None: no keys configured, the API serves default_tenant without authentication.
    keys: CredentialStore | None = None

    @property
    def open(self) -> bool:
        return self.keys is None


def access_policy(request: Request) -> AccessPolicy:
    return cast(AccessPolicy, request.app.state.access)


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def authenticate(policy: AccessPolicy, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if policy.keys is None:
        return Caller(policy.default_tenant, ADMIN, "anonymous")
    if credentials is None:
        raise unauthorized("this API needs an API key: send `Authorization: Bearer <key>`")
    credential = policy.keys.verify(credentials.credentials)
    if credential is None:
        raise unauthorized("the API key is not valid")
    return Caller(credential.tenant, credential.role, credential.id)


def authorize(caller: Caller, role: str) -> Caller:
    if ROLES.index(caller.role) < ROLES.index(role):
        raise HTTPException(
            status_code=403, detail=f"API key {caller.key_id!r} has role {caller.role}; this needs {role} or above"
        )
    return caller


def require(role: str) -> Callable[..., Caller]:
    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Caller:
        return authorize(authenticate(access_policy(request), credentials), role)

    return dependency


Reader = Annotated[Caller, Depends(require(RESPONDER))]
Reviewer = Annotated[Caller, Depends(require(REVIEWER))]
Admin = Annotated[Caller, Depends(require(ADMIN))]
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Documented on every route that takes a key, with the storage error every route can answer.
AUTH_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: error("No API key, or an unknown one (only when API keys are configured)."),
    403: error("The API key's role does not allow this."),
    503: error("ClickHouse is unreachable."),
}
