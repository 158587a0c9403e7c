"""FastAPI dependencies shared by the routers: the ClickHouse client, the read pool and the query API's
settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, cast

from clickhouse_connect.driver.client import Client
from fastapi import Depends, Request

from agentledger.credentials import CredentialStore
from agentledger.ingest.audit_chain import ChainWriter
from agentledger.ingest.cluster_ddl import DdlShape
from agentledger.ingest.signing import LinkSigner
from agentledger.query_api.audit_config import AuditConfig
from agentledger.query_api.metrics_config import MetricsConfig
from agentledger.query_api.phoenix_sync import PhoenixConnection, PhoenixSync
from agentledger.query_api.read_pool import Reads


@dataclass(frozen=True)
class QueryApiConfig:
    # Tenant served when no API keys are configured, and the tenant signed webhooks are stored under.
    tenant: str = "default"
    # None: no keys, the API serves `tenant` openly (`up` allows that on loopback only).
    api_keys: CredentialStore | None = None
    github_webhook_secret: str = ""
    jira_webhook_secret: str = ""
    # The Jira custom field holding the agent run id.
    jira_run_id_field: str = "customfield_10100"
    # Public key (PEM) that audit chain links are signed with; verification checks signatures when set.
    audit_public_key_pem: str | None = None
    # The key the API signs its own links (tombstones) with: the ClickHouse exporter's signing key.
    audit_signer: LinkSigner | None = None
    # The API's own log in the audit chain (tombstones), distinct from every collector's.
    audit_collector_id: str = "api"
    # The checkpoint sink directory: verification reads checkpoints there as well as in the table, and
    # the API's writer appends its checkpoints there.
    checkpoint_dir: Path | None = None
    # Phoenix (from the phoenix exporter's config): timeline links and the annotation sync; None: neither.
    phoenix: PhoenixConnection | None = None
    # Prices, review cost and blast-radius ceilings (api.metrics in the config file).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Tool catalogue, rule settings, user rules, baselines and budgets of the audit (api.audit).
    audit: AuditConfig = field(default_factory=AuditConfig)
    # storage.cluster: holds and deletions run their mutations on every node's local tables; None: one node.
    ddl_shape: DdlShape | None = None


def get_client(request: Request) -> Iterator[Client]:
    """A client of the read pool's for the request alone (not the main client, whose calls the collector's
    inserts hold in `agentledger up`)."""
    with cast(Reads, request.app.state.reads).lease() as client:
        yield client


def get_reads(request: Request) -> Reads:
    return cast(Reads, request.app.state.reads)


def get_config(request: Request) -> QueryApiConfig:
    return cast(QueryApiConfig, request.app.state.config)


def get_chain_writer(request: Request) -> ChainWriter:
    return cast(ChainWriter, request.app.state.chain_writer)


ClientDep = Annotated[Client, Depends(get_client)]
ConfigDep = Annotated[QueryApiConfig, Depends(get_config)]
# A request's independent reads at once (timeline, audit, listing); ClientDep for the rest and for writes.
ReadsDep = Annotated[Reads, Depends(get_reads)]
ChainWriterDep = Annotated[ChainWriter, Depends(get_chain_writer)]


def get_phoenix_sync(request: Request) -> PhoenixSync | None:
    return cast("PhoenixSync | None", request.app.state.phoenix_sync)


PhoenixSyncDep = Annotated["PhoenixSync | None", Depends(get_phoenix_sync)]
