"""Exports span batches to an Arize Phoenix server over OTLP/HTTP protobuf, as OpenInference spans
(phoenix_convert.py), so reviewers see what the pipeline's processors produced (after redaction)."""

from __future__ import annotations

import gzip
from typing import Literal

import httpx
from pydantic import Field, field_validator

from agentledger.collector.component import SpanBatch
from agentledger.collector.config import ExporterConfig, FrozenModel, MiB
from agentledger.collector.export_errors import classify_http_status, classify_http_transport
from agentledger.collector.exporters.phoenix_convert import to_otlp_request
from agentledger.schema.span_columns import with_added_columns


class PhoenixSyncConfig(FrozenModel):
    """Annotation sync between Phoenix and the annotations table, run by `agentledger up` in the background."""

    enabled: bool = True
    interval_s: float = Field(60.0, ge=1)
    # Spans that started this long ago or less are looked up for annotations, and their runs' findings pushed:
    # Phoenix's REST API lists annotations by span id only, so the window bounds each sync's work.
    lookback_hours: float = Field(168.0, gt=0)


class PhoenixExporterConfig(ExporterConfig):
    # Phoenix's base URL (its UI port); spans go to {endpoint}/v1/traces.
    endpoint: str = "http://127.0.0.1:6006"
    project: str = Field("agentledger", min_length=1, pattern=r"^[^/?#]+$")
    # Sent with every request (OTLP and REST), e.g. a proxy's credentials.
    headers: dict[str, str] = Field(default_factory=dict)
    # Phoenix's system or user API key when its authentication is on; sent as a bearer token.
    api_key: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    # Where people open Phoenix, for the links on timeline entries; default: endpoint.
    ui_url: str | None = None
    sync: PhoenixSyncConfig = PhoenixSyncConfig()
    # Phoenix queues at most 20,000 spans in memory by default (503 beyond), and makes ~150/s queryable.
    batch_max_spans: int = Field(2_000, ge=1)
    # Phoenix is where people review, not the record: when it is down for long, skip its oldest spans rather
    # than fill the spool (which would refuse spans for ClickHouse too). Keep this below spool.max_bytes.
    max_backlog_bytes: int | None = Field(256 * MiB, ge=1)
    overflow: Literal["block", "skip_oldest"] = "skip_oldest"

    @field_validator("endpoint", "ui_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value.rstrip("/") if value is not None else None

    @property
    def link_base_url(self) -> str:
        return self.ui_url or self.endpoint

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers


class PhoenixExporter:
    def __init__(self, config: PhoenixExporterConfig) -> None:
        self._config = config
        self._client = httpx.Client(timeout=config.timeout_s, headers=config.request_headers())
        self._url = f"{config.endpoint}/v1/traces"

    def export(self, batch: SpanBatch, batch_id: str) -> None:
        """A batch retried after a lost answer does not duplicate: Phoenix ignores a span id it has stored."""
        batch = with_added_columns(batch)  # a spool left by an older version
        body = gzip.compress(to_otlp_request(batch, self._config.project).SerializeToString(), compresslevel=1)
        try:
            response = self._client.post(
                self._url,
                content=body,
                headers={
                    "content-type": "application/x-protobuf",
                    "content-encoding": "gzip",
                    "x-project-name": self._config.project,
                },
            )
        except httpx.HTTPError as error:
            raise classify_http_transport(error, f"Phoenix at {self._config.endpoint} is unreachable") from error
        if response.status_code != 200:
            raise classify_http_status(
                response.status_code,
                f"Phoenix answered {response.status_code} to batch {batch_id}: {response.text[:200]!r}",
            )

    def shutdown(self) -> None:
        self._client.close()
