"""Bearer credentials (collector ingest tokens, query API keys), stored only as hashes.

Tokens are 32 random bytes, so a plain SHA-256 is enough to make a stolen credentials file useless;
a slow password hash would only slow every request. Files are YAML:

    credentials:
      - id: refund-agent-prod        # a name for logs and audit, never the secret
        sha256: 9f86d08...           # hex SHA-256 of the token
        tenant: acme
        role: agent                  # collector: agent; query API: responder | reviewer | admin
        agent_id: refund-agent-prod-1   # collector only: the identity stamped on spans
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

TOKEN_PREFIX = "al_"


class CredentialsError(ValueError):
    """The credentials file is unreadable or inconsistent; the message names the entry and field."""


@dataclass(frozen=True)
class Credential:
    id: str
    sha256: str
    tenant: str
    role: str
    agent_id: str = ""


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class CredentialStore:
    """Looks tokens up by hash; knows only hashes."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self._by_hash: dict[str, Credential] = {}
        for credential in credentials:
            if credential.sha256 in self._by_hash:
                raise CredentialsError(
                    f"credentials {credential.id!r} and {self._by_hash[credential.sha256].id!r}"
                    " have the same token hash"
                )
            self._by_hash[credential.sha256] = credential

    def __len__(self) -> int:
        return len(self._by_hash)

    def verify(self, token: str | None) -> Credential | None:
        if not token:
            return None
        digest = hash_token(token)
        credential = self._by_hash.get(digest)
        # compare_digest keeps the final comparison constant-time even though the lookup is a dict.
        if credential is None or not hmac.compare_digest(credential.sha256, digest):
            return None
        return credential


def parse_credentials(document: object, source: str, roles: Iterable[str]) -> list[Credential]:
    allowed = tuple(roles)
    if not isinstance(document, Mapping) or not isinstance(document.get("credentials"), list):
        raise CredentialsError(f"{source}: expected a mapping with a `credentials:` list")
    result = []
    for index, entry in enumerate(document["credentials"]):
        where = f"{source}: credentials[{index}]"
        if not isinstance(entry, Mapping):
            raise CredentialsError(f"{where} must be a mapping")
        unknown = set(entry) - {"id", "sha256", "tenant", "role", "agent_id"}
        if unknown:
            raise CredentialsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for field in ("id", "sha256", "tenant", "role"):
            if not isinstance(entry.get(field), str) or not entry[field]:
                raise CredentialsError(f"{where}.{field} is required")
        digest = entry["sha256"].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise CredentialsError(f"{where}.sha256 must be 64 hex characters (the SHA-256 of the token)")
        if entry["role"] not in allowed:
            raise CredentialsError(f"{where}.role must be one of {', '.join(allowed)}, not {entry['role']!r}")
        result.append(Credential(entry["id"], digest, entry["tenant"], entry["role"], str(entry.get("agent_id", ""))))
    return result


def load_credentials(path: Path, roles: Iterable[str]) -> CredentialStore:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CredentialsError(f"cannot read credentials file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise CredentialsError(f"credentials file {path} is not valid YAML: {error}") from error
    return CredentialStore(parse_credentials(document, str(path), roles))


ALL_ROLES = ("agent", "responder", "reviewer", "admin")


def add_credential(
    path: Path, credential_id: str, tenant: str, role: str, agent_id: str = "", roles: Iterable[str] = ALL_ROLES
) -> str:
    """Creates a token, appends its hash to the file (created 0600 if missing) and returns the token.

    `roles` are those the file's reader accepts (the query API's for an API keys file)."""
    allowed = tuple(roles)
    if role not in allowed:
        raise CredentialsError(f"role must be one of {', '.join(allowed)}, not {role!r}")
    if not credential_id.strip() or not tenant.strip():
        raise CredentialsError("the id and tenant must not be empty")
    document: dict[str, object] = {"credentials": []}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {"credentials": []}
        except (OSError, yaml.YAMLError) as error:
            raise CredentialsError(f"cannot read credentials file {path}: {error}") from error
        parse_credentials(loaded, str(path), allowed)
        document = loaded
    token = generate_token()
    entry = {"id": credential_id, "sha256": hash_token(token), "tenant": tenant, "role": role}
    if agent_id:
        entry["agent_id"] = agent_id
    entries = document["credentials"]
    assert isinstance(entries, list)
    if any(existing.get("id") == credential_id for existing in entries):
        raise CredentialsError(f"{path}: a credential with id {credential_id!r} exists already")
    entries.append(entry)
    parse_credentials(document, str(path), allowed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(document, sort_keys=False))
        temporary.replace(path)
    except OSError as error:
        raise CredentialsError(f"cannot write credentials file {path}: {error.strerror}") from error
    return token
