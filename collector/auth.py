"""Bearer-token authentication of OTLP senders: each token maps to an agent identity and a tenant."""

from __future__ import annotations

from agentledger.collector.config import AuthConfig, ConfigError
from agentledger.collector.receivers.otlp_decode import Identity
from agentledger.credentials import CredentialsError, CredentialStore, bearer_token, load_credentials

AGENT_ROLE = "agent"


class Unauthenticated(Exception):
    """No valid bearer token; the message is safe to return to the client."""


class Authenticator:
    def __init__(self, config: AuthConfig, default_tenant: str) -> None:
        self.enabled = config.enabled
        self._default = Identity(tenant=default_tenant)
        self._store = CredentialStore([])
        if config.enabled:
            if config.credentials_file is None:
                raise ConfigError("receivers.otlp.auth.credentials_file is required when auth.enabled is true")
            try:
                self._store = load_credentials(config.credentials_file, roles=(AGENT_ROLE,))
            except CredentialsError as error:
                raise ConfigError(f"receivers.otlp.auth.credentials_file: {error}") from None
            if len(self._store) == 0:
                raise ConfigError("receivers.otlp.auth.credentials_file lists no credentials; nobody could send")

    def identify(self, authorization: str | None) -> Identity:
        """The sender's identity from an `Authorization` header value; raises Unauthenticated."""
        if not self.enabled:
            return self._default
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("missing bearer token: send `Authorization: Bearer <token>`")
        credential = self._store.verify(token)
        if credential is None:
            raise Unauthenticated("invalid bearer token")
        return Identity(tenant=credential.tenant, agent_id=credential.agent_id or credential.id)
