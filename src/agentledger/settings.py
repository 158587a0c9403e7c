"""Process settings of the `agentledger` command: defaults, environment variables (all named here) and flags.

Precedence: command-line flag, then environment variable, then default.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentledger.collector.config import ConfigError
from agentledger.ingest.clickhouse import chdb_dsn

ENV_DATA_DIR: Final = "AGENTLEDGER_DATA_DIR"
ENV_CLICKHOUSE_DSN: Final = "AGENTLEDGER_CLICKHOUSE_DSN"
ENV_DATABASE: Final = "AGENTLEDGER_DATABASE"
ENV_HOST: Final = "AGENTLEDGER_HOST"
ENV_OTLP_HTTP_PORT: Final = "AGENTLEDGER_OTLP_HTTP_PORT"
ENV_API_PORT: Final = "AGENTLEDGER_API_PORT"
ENV_TENANT: Final = "AGENTLEDGER_TENANT"
ENV_API_URL: Final = "AGENTLEDGER_API_URL"
ENV_COLLECTOR_URL: Final = "AGENTLEDGER_COLLECTOR_URL"
ENV_API_KEYS_FILE: Final = "AGENTLEDGER_API_KEYS_FILE"
ENV_API_KEY: Final = "AGENTLEDGER_API_KEY"
ENV_GITHUB_WEBHOOK_SECRET: Final = "AGENTLEDGER_GITHUB_WEBHOOK_SECRET"
ENV_JIRA_WEBHOOK_SECRET: Final = "AGENTLEDGER_JIRA_WEBHOOK_SECRET"
ENV_JIRA_RUN_ID_FIELD: Final = "AGENTLEDGER_JIRA_RUN_ID_FIELD"

DEFAULT_DATA_DIR: Final = ".agentledger"
DEFAULT_DATABASE: Final = "agentledger"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_OTLP_HTTP_PORT: Final = 4318
DEFAULT_API_PORT: Final = 8000
DEFAULT_TENANT: Final = "default"
DEFAULT_JIRA_RUN_ID_FIELD: Final = "customfield_10100"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    clickhouse_dsn: str
    database: str
    host: str
    otlp_http_port: int
    api_port: int
    tenant: str
    # Query API access: None serves `tenant` without keys (refused on a non-loopback host).
    api_keys_file: Path | None = None
    github_webhook_secret: str = ""
    jira_webhook_secret: str = ""
    jira_run_id_field: str = DEFAULT_JIRA_RUN_ID_FIELD

    @property
    def collector_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.otlp_http_port}"

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.api_port}"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the servers reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(host: str) -> str:
    # A wildcard bind address is reached through loopback.
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _port(name: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a TCP port number, not {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be a TCP port between 0 and 65535, not {port}")
    return port


def load_settings(flags: Mapping[str, str | int | Path | None], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (None = not given) over environment variables over defaults."""
    env = os.environ if environ is None else environ

    def pick(flag: str, env_name: str, default: str) -> str:
        value = flags.get(flag)
        if value is not None:
            return str(value)
        return env.get(env_name) or default

    data_dir = Path(pick("data_dir", ENV_DATA_DIR, DEFAULT_DATA_DIR))
    dsn = pick("dsn", ENV_CLICKHOUSE_DSN, chdb_dsn(data_dir / "clickhouse"))
    if not dsn.startswith(("chdb:", "http://", "https://")):
        raise ConfigError(f"{ENV_CLICKHOUSE_DSN} / --dsn must start with chdb://, http:// or https://, not {dsn!r}")
    return Settings(
        data_dir=data_dir,
        clickhouse_dsn=dsn,
        database=pick("database", ENV_DATABASE, DEFAULT_DATABASE),
        host=pick("host", ENV_HOST, DEFAULT_HOST),
        otlp_http_port=_port(
            "--otlp-http-port", pick("otlp_http_port", ENV_OTLP_HTTP_PORT, str(DEFAULT_OTLP_HTTP_PORT))
        ),
        api_port=_port("--api-port", pick("api_port", ENV_API_PORT, str(DEFAULT_API_PORT))),
        tenant=pick("tenant", ENV_TENANT, DEFAULT_TENANT),
        api_keys_file=Path(keys_file) if (keys_file := pick("api_keys_file", ENV_API_KEYS_FILE, "")) else None,
        github_webhook_secret=env.get(ENV_GITHUB_WEBHOOK_SECRET, ""),
        jira_webhook_secret=env.get(ENV_JIRA_WEBHOOK_SECRET, ""),
        jira_run_id_field=pick("jira_run_id_field", ENV_JIRA_RUN_ID_FIELD, DEFAULT_JIRA_RUN_ID_FIELD),
    )
