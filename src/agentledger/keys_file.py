"""Appends a new API key to a credentials file: the token is returned once, only its hash is stored."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from agentledger.credentials import CredentialsError, generate_token, hash_token, parse_credentials
from agentledger.query_api.auth import ROLES


def append_key(path: Path, key_id: str, tenant: str, role: str) -> str:
    """Adds {id, sha256, tenant, role} to the file (created 0600 if missing) and returns the new token."""
    entries: list[dict[str, str]] = []
    if path.exists():
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise CredentialsError(f"cannot read keys file {path}: {error}") from error
        existing = parse_credentials(document, str(path), ROLES)
        if any(credential.id == key_id for credential in existing):
            raise CredentialsError(f"{path} already has a key with id {key_id!r}")
        entries = list(document["credentials"])
    if not key_id.strip() or not tenant.strip():
        raise CredentialsError("the key id and tenant must not be empty")
    token = generate_token()
    entries.append({"id": key_id, "sha256": hash_token(token), "tenant": tenant, "role": role})
    text = yaml.safe_dump({"credentials": entries}, sort_keys=False)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise CredentialsError(f"cannot write keys file {path}: {error.strerror}") from error
    return token
