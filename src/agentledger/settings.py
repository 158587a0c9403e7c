"""The process configuration of `agentledger up`: one YAML file, environment variables (all named here) and flags.

Precedence: command-line flag, then environment variable, then the config file, then the default.
The file holds `data_dir`, `storage`, `api` and the collector sections (`receivers`, `processors`,
`exporters`, `spool`, `service`); see agentledger.example.yaml.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import Field, ValidationError, field_validator

from agentledger.collector.config import (
    ConfigError,
    EndpointConfig,
    FrozenModel,
    MiB,
    describe_validation_error,
)
from agentledger.collector.config_file import DEFAULT_COMPONENTS, CollectorConfig, parse_collector_config
from agentledger.ingest.clickhouse import chdb_dsn
from agentledger.ingest.cluster_ddl import CLUSTER_NAME, DdlShape
from agentledger.query_api.audit_config import AuditConfig
from agentledger.query_api.metrics_config import MetricsConfig
from agentledger.query_api.read_pool import DEFAULT_WORKERS as DEFAULT_READ_WORKERS

ENV_CONFIG: Final = "AGENTLEDGER_CONFIG"
ENV_DATA_DIR: Final = "AGENTLEDGER_DATA_DIR"
ENV_CLICKHOUSE_DSN: Final = "AGENTLEDGER_CLICKHOUSE_DSN"
ENV_DATABASE: Final = "AGENTLEDGER_DATABASE"
ENV_HOST: Final = "AGENTLEDGER_HOST"
ENV_OTLP_HTTP_PORT: Final = "AGENTLEDGER_OTLP_HTTP_PORT"
ENV_OTLP_GRPC_PORT: Final = "AGENTLEDGER_OTLP_GRPC_PORT"
ENV_API_PORT: Final = "AGENTLEDGER_API_PORT"
ENV_TENANT: Final = "AGENTLEDGER_TENANT"
ENV_ALLOW_UNAUTHENTICATED: Final = "AGENTLEDGER_ALLOW_UNAUTHENTICATED"
ENV_API_KEYS_FILE: Final = "AGENTLEDGER_API_KEYS_FILE"
ENV_API_KEY: Final = "AGENTLEDGER_API_KEY"
ENV_GITHUB_WEBHOOK_SECRET: Final = "AGENTLEDGER_GITHUB_WEBHOOK_SECRET"
ENV_JIRA_WEBHOOK_SECRET: Final = "AGENTLEDGER_JIRA_WEBHOOK_SECRET"
ENV_JIRA_RUN_ID_FIELD: Final = "AGENTLEDGER_JIRA_RUN_ID_FIELD"
ENV_REDACTION_HMAC_KEY: Final = "AGENTLEDGER_REDACTION_HMAC_KEY"
ENV_API_URL: Final = "AGENTLEDGER_API_URL"
ENV_COLLECTOR_URL: Final = "AGENTLEDGER_COLLECTOR_URL"
ENV_CLICKHOUSE_CLUSTER: Final = "AGENTLEDGER_CLICKHOUSE_CLUSTER"
ENV_COLLECTOR_ID: Final = "AGENTLEDGER_COLLECTOR_ID"

DEFAULT_DATA_DIR: Final = ".agentledger"
DEFAULT_DATABASE: Final = "agentledger"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_OTLP_HTTP_PORT: Final = 4318
DEFAULT_OTLP_GRPC_PORT: Final = 4317
DEFAULT_API_PORT: Final = 8000
DEFAULT_TENANT: Final = "default"
DEFAULT_JIRA_RUN_ID_FIELD: Final = "customfield_10100"

_TOP_LEVEL_KEYS: Final = frozenset(
    {"data_dir", "storage", "api", "receivers", "processors", "exporters", "spool", "service"}
)


class EmbeddedStorageConfig(FrozenModel):
    """Server settings of the embedded ClickHouse (chDB), which runs inside the `up` process: its memory is the
    process's. ClickHouse's own defaults size caches for a dedicated server (5 GiB of mark cache, 90% of RAM);
    these bound it for a collector that shares a machine. Ignored with a server DSN (its config.xml rules)."""

    # ClickHouse refuses a query or insert that would take its tracked memory over this (MEMORY_LIMIT_EXCEEDED:
    # the export is retried, the spool holds the spans); 0 (default): ClickHouse's own, 90% of RAM. Measured:
    # one 5,000-span insert into spans (with its materialized views) peaks at ~340 MiB and a merge at ~350 MiB,
    # so a bound under ~768 MiB makes 20,000-span exports fail and retry until they are split.
    max_server_memory_usage: int = Field(0, ge=0)
    # Caches of column marks and primary/skipping indexes read by queries (ClickHouse: 5 GiB each).
    mark_cache_size: int = Field(64 * MiB, ge=0)
    index_mark_cache_size: int = Field(16 * MiB, ge=0)
    primary_index_cache_size: int = Field(64 * MiB, ge=0)
    # Decompressed blocks kept for re-reads (ClickHouse: 0, off) and results of the query condition cache.
    uncompressed_cache_size: int = Field(0, ge=0)
    query_condition_cache_size: int = Field(16 * MiB, ge=0)
    # Threads merging parts in the background (each merge holds a block per column); ClickHouse: 16.
    background_pool_size: int = Field(2, ge=1, le=64)
    # Milliseconds chDB's allocator (jemalloc) keeps freed pages before returning them to the system
    # (ClickHouse: 5000). Each insert frees its whole block at once; 0 returns it at once, so consecutive
    # inserts do not stay resident together (ingest/embedded_memory.py). Set before the engine loads.
    allocator_dirty_decay_ms: int = Field(0, ge=0, le=3_600_000)
    # After start, ask the kernel to reclaim chDB's read-only library pages (~190 MiB of code and constants
    # touched once while the engine starts); pages a later query needs are re-read from the library file.
    release_library_pages: bool = True
    # Seconds between later reclaims of those pages (0: only once, after start): inserts, merges and queries fault
    # their code back in, and it would stay resident under every later peak (ingest/embedded_memory.py). A reclaim
    # reads /proc/self/smaps (<1 ms) and the next export faults its code in again; measured no CPU cost per span.
    release_library_pages_interval_s: float = Field(2.0, ge=0, le=3600)

    def server_settings(self) -> dict[str, str]:
        """The settings as chDB start-up options, by ClickHouse's names; 0 memory limit: left to ClickHouse."""
        process_options = {"allocator_dirty_decay_ms", "release_library_pages", "release_library_pages_interval_s"}
        values = self.model_dump(exclude=process_options)
        if values["max_server_memory_usage"] == 0:
            del values["max_server_memory_usage"]
        return {name: str(value) for name, value in values.items()}


class StorageConfig(FrozenModel):
    # Default: embedded chDB in <data_dir>/clickhouse.
    dsn: str | None = None
    embedded: EmbeddedStorageConfig = EmbeddedStorageConfig()
    database: str = Field(DEFAULT_DATABASE, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    # A ClickHouse cluster (a name in the servers' remote_servers): migrations then create Replicated local
    # tables and Distributed tables ON CLUSTER (ingest/cluster_ddl.py). None: one node.
    cluster: str | None = None

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not CLUSTER_NAME.match(value):
            raise ValueError(f"must be a cluster name from remote_servers (letters, digits, _ and -), not {value!r}")
        return value


class ApiConfig(EndpointConfig):
    endpoint: str = f"{DEFAULT_HOST}:{DEFAULT_API_PORT}"
    # Tenant an unauthenticated API serves, and the tenant signed webhooks are stored under.
    tenant: str = Field(DEFAULT_TENANT, min_length=1)
    # API keys (`agentledger keys create`); none: the API serves `tenant` openly, loopback only.
    keys_file: Path | None = None
    github_webhook_secret: str = ""
    jira_webhook_secret: str = ""
    # The Jira custom field holding the agent run id.
    jira_run_id_field: str = Field(DEFAULT_JIRA_RUN_ID_FIELD, min_length=1)
    # How many of one request's independent reads run at once (query_api/read_pool.py); 1: one after another.
    read_workers: int = Field(DEFAULT_READ_WORKERS, ge=1, le=64)
    # Prices, review cost and blast-radius ceilings of the metrics API.
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    # Tool catalogue, rule settings, user rules, cost baselines and budgets of the audit.
    audit: AuditConfig = Field(default_factory=AuditConfig)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    clickhouse_dsn: str
    database: str
    api: ApiConfig
    collector: CollectorConfig
    allow_unauthenticated: bool = False
    cluster: str | None = None
    embedded: EmbeddedStorageConfig = field(default_factory=EmbeddedStorageConfig)

    @property
    def ddl_shape(self) -> DdlShape:
        """The shape migrations take: one node, or storage.cluster."""
        return DdlShape(self.database, self.cluster)

    @property
    def tenant(self) -> str:
        return self.api.tenant

    @property
    def collector_url(self) -> str:
        http = self.collector.receiver.protocols.http
        if http is None:
            raise ConfigError("the OTLP/HTTP protocol is disabled in receivers.otlp.protocols.http")
        return f"http://{_url_host(http.host)}:{http.port}"

    @property
    def spool_directory(self) -> Path:
        """Where `up` keeps the spool (and the dead-letter store inside it)."""
        return self.collector.spool.directory or self.data_dir / "spool"

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(self.api.host)}:{self.api.port}"

    def exposed_without_auth(self) -> list[str]:
        """Endpoints bound beyond loopback although their callers are not authenticated."""
        receiver = self.collector.receiver
        exposed = []
        if not receiver.auth.enabled:
            for protocol in (receiver.protocols.http, receiver.protocols.grpc):
                if protocol is not None and not is_loopback(protocol.host):
                    exposed.append(protocol.endpoint)
        return exposed


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top")
    unknown = set(document) - _TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}"
            f" (known: {', '.join(sorted(_TOP_LEVEL_KEYS))})"
        )
    return document


def _override_endpoint(section: dict[str, Any], default: str, host: str | None, port: int | None) -> None:
    if host is None and port is None:
        return
    current = str(section.get("endpoint", default))
    current_host, _, current_port = current.rpartition(":")
    section["endpoint"] = f"{host if host is not None else current_host}:{port if port is not None else current_port}"


def load_settings(
    flags: Mapping[str, str | int | Path | bool | None], environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags (None = not given) over environment variables over the config file over defaults."""
    env = os.environ if environ is None else environ

    def given(flag: str, env_name: str) -> str | None:
        value = flags.get(flag)
        if value is not None and value is not False:
            return str(value)
        return env.get(env_name) or None

    config_path = given("config", ENV_CONFIG)
    document = copy.deepcopy(read_config_file(Path(config_path))) if config_path else {}

    data_dir = Path(given("data_dir", ENV_DATA_DIR) or document.get("data_dir") or DEFAULT_DATA_DIR)
    storage_raw = dict(document.get("storage") or {})
    if (dsn := given("dsn", ENV_CLICKHOUSE_DSN)) is not None:
        storage_raw["dsn"] = dsn
    if (database := given("database", ENV_DATABASE)) is not None:
        storage_raw["database"] = database
    if (cluster := given("cluster", ENV_CLICKHOUSE_CLUSTER)) is not None:
        storage_raw["cluster"] = cluster

    host = given("host", ENV_HOST)
    http_port = given("otlp_http_port", ENV_OTLP_HTTP_PORT)
    grpc_port = given("otlp_grpc_port", ENV_OTLP_GRPC_PORT)
    api_port = given("api_port", ENV_API_PORT)
    tenant = given("tenant", ENV_TENANT)

    api_raw = dict(document.get("api") or {})
    _override_endpoint(api_raw, f"{DEFAULT_HOST}:{DEFAULT_API_PORT}", host,
                       _port("--api-port", api_port) if api_port else None)  # fmt: skip
    if tenant is not None:
        api_raw["tenant"] = tenant
    for key, flag, env_name in (
        ("keys_file", "api_keys_file", ENV_API_KEYS_FILE),
        ("github_webhook_secret", "github_webhook_secret", ENV_GITHUB_WEBHOOK_SECRET),
        ("jira_webhook_secret", "jira_webhook_secret", ENV_JIRA_WEBHOOK_SECRET),
        ("jira_run_id_field", "jira_run_id_field", ENV_JIRA_RUN_ID_FIELD),
    ):
        if (value := given(flag, env_name)) is not None:
            api_raw[key] = value

    receivers = document.setdefault("receivers", copy.deepcopy(dict(DEFAULT_COMPONENTS["receivers"])))
    for component_id, receiver in list((receivers or {}).items()):
        if str(component_id).split("/", 1)[0] != "otlp":
            continue
        receiver = receivers[component_id] = dict(receiver or {})
        protocols = receiver["protocols"] = dict(receiver.get("protocols") or {"http": {}, "grpc": {}})
        for name, default_port, port in (
            ("http", DEFAULT_OTLP_HTTP_PORT, _port("--otlp-http-port", http_port) if http_port else None),
            ("grpc", DEFAULT_OTLP_GRPC_PORT, _port("--otlp-grpc-port", grpc_port) if grpc_port else None),
        ):
            if name in protocols and protocols[name] is None:
                continue  # disabled in the file
            protocol = protocols[name] = dict(protocols.get(name) or {})
            _override_endpoint(protocol, f"{DEFAULT_HOST}:{default_port}", host, port)
        if tenant is not None:
            receiver["tenant"] = tenant

    # The pseudonym key is a secret: it may come from the environment rather than the file.
    if (hmac_key := env.get(ENV_REDACTION_HMAC_KEY)) is not None:
        processors = document.setdefault("processors", copy.deepcopy(dict(DEFAULT_COMPONENTS["processors"])))
        for component_id in list(processors or {}):
            if str(component_id).split("/", 1)[0] == "redaction":
                processors[component_id] = {**(processors[component_id] or {}), "hmac_key": hmac_key}

    # Processes sharing one config file (compose's collectors) each name their own audit log.
    if (collector_id := env.get(ENV_COLLECTOR_ID)) is not None:
        exporters = document.setdefault("exporters", copy.deepcopy(dict(DEFAULT_COMPONENTS["exporters"])))
        for component_id in list(exporters or {}):
            if str(component_id).split("/", 1)[0] == "clickhouse":
                exporters[component_id] = {**(exporters[component_id] or {}), "collector_id": collector_id}

    try:
        storage = StorageConfig.model_validate(storage_raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error("storage", error)) from None
    try:
        api = ApiConfig.model_validate(api_raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error("api", error)) from None
    collector = parse_collector_config(document)
    dsn_value = storage.dsn or chdb_dsn(data_dir / "clickhouse")
    if not dsn_value.startswith(("chdb:", "http://", "https://")):
        raise ConfigError(
            f"{ENV_CLICKHOUSE_DSN} / --dsn / storage.dsn must start with chdb://, http:// or https://,"
            f" not {dsn_value!r}"
        )
    allow = given("allow_unauthenticated", ENV_ALLOW_UNAUTHENTICATED)
    return Settings(
        data_dir=data_dir,
        clickhouse_dsn=dsn_value,
        database=storage.database,
        api=api,
        collector=collector,
        allow_unauthenticated=allow is not None and allow.lower() not in ("0", "false", "no", ""),
        cluster=storage.cluster,
        embedded=storage.embedded,
    )
