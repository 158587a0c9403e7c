"""Typed, frozen configuration of the collector, validated once at startup; errors name the offending key.

The YAML shape follows the OTel Collector: `receivers`, `processors`, `exporters` keyed by
`type[/name]`, wired by `service.pipelines.traces`. Component configs are pydantic models registered
with their factories in components.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MiB = 1024 * 1024


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


class FrozenModel(BaseModel):
    """Base of every config model: immutable, and unknown keys are errors rather than silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def describe_validation_error(prefix: str, error: ValidationError) -> str:
    """One sentence per problem, each naming the full key path, e.g. `receivers.otlp.limits.x: ...`."""
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        problems.append(f"{path}: {item['msg']}")
    return "; ".join(problems)


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"endpoint must be host:port, not {endpoint!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is not a TCP port")
    return host.strip("[]"), port


class EndpointConfig(FrozenModel):
    endpoint: str

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        _split_endpoint(value)
        return value

    @property
    def host(self) -> str:
        return _split_endpoint(self.endpoint)[0]

    @property
    def port(self) -> int:
        return _split_endpoint(self.endpoint)[1]


class HttpProtocolConfig(EndpointConfig):
    endpoint: str = "127.0.0.1:4318"
    # Compressed and decompressed bodies alike; the OTel Collector's default is 20 MiB.
    max_request_bytes: int = Field(16 * MiB, ge=1024)


class GrpcProtocolConfig(EndpointConfig):
    endpoint: str = "127.0.0.1:4317"
    max_request_bytes: int = Field(16 * MiB, ge=1024)
    max_workers: int = Field(8, ge=1, le=256)


class ProtocolsConfig(FrozenModel):
    http: HttpProtocolConfig | None = HttpProtocolConfig()
    grpc: GrpcProtocolConfig | None = GrpcProtocolConfig()


class AuthConfig(FrozenModel):
    """Bearer-token authentication; tokens map to an agent identity and a tenant (credentials.py)."""

    enabled: bool = False
    credentials_file: Path | None = None


class LimitsConfig(FrozenModel):
    """What one span or request may carry; anything over is truncated with a marker and counted."""

    max_attribute_value_bytes: int = Field(16 * 1024, ge=16)
    # Prompts, messages, tool arguments and results have their own columns and a larger allowance.
    max_content_bytes: int = Field(1 * MiB, ge=16)
    max_attributes_per_span: int = Field(256, ge=1)
    max_events_per_span: int = Field(256, ge=0)
    max_links_per_span: int = Field(128, ge=0)
    # The OTel SDK's batch processor sends 512 spans per request and the Collector's batcher 8192; 10k
    # leaves room for both while bounding the per-request decode work.
    max_spans_per_request: int = Field(10_000, ge=1)
    # What a request may expand to once decoded into the span batch, counting each span's copy of its
    # resource attributes: a small request with a large resource and many spans is refused (413 /
    # RESOURCE_EXHAUSTED) before any span is materialised.
    max_decoded_bytes_per_request: int = Field(64 * MiB, ge=64 * 1024)


class OtlpReceiverConfig(FrozenModel):
    protocols: ProtocolsConfig = ProtocolsConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    # Tenant stamped on spans when authentication is off.
    tenant: str = Field("default", min_length=1)


class RetryConfig(FrozenModel):
    """Back-off between attempts at one batch, after the OTel Collector's retry_on_failure."""

    initial_interval_s: float = Field(0.5, gt=0)
    max_interval_s: float = Field(30.0, gt=0)
    multiplier: float = Field(2.0, ge=1)
    # Each wait is drawn from [interval * (1 - f), interval * (1 + f)], so workers do not retry in lockstep.
    randomization_factor: float = Field(0.5, ge=0, lt=1)
    # A batch still failing after this long or this many attempts with an error that is not the destination
    # being down (those retry without a cap: the spool holds the data) is treated as refused for good: split
    # to isolate the spans at fault, which go to the dead-letter store. None: no cap of that kind.
    max_elapsed_s: float | None = Field(300.0, gt=0)
    max_attempts: int | None = Field(None, ge=1)
    # When splitting a refused batch, at most this many sub-batches are tried; beyond, the parts still
    # refused are dead-lettered whole (a batch every span of which is refused costs no more than this).
    max_split_exports: int = Field(256, ge=2)


class ExporterConfig(FrozenModel):
    """Settings every exporter has: how its worker batches spool records, retries failures, and what it
    does when its destination falls too far behind."""

    # Spool records are combined into exports of up to this many spans.
    batch_max_spans: int = Field(20_000, ge=1)
    retry: RetryConfig = RetryConfig()
    # How many spool bytes this exporter may leave undelivered. The spool refuses new spans (429) once any
    # exporter's backlog reaches spool.max_bytes, so a secondary destination (Phoenix) that may be down
    # for long needs a smaller bound and `skip_oldest` to keep the primary one (ClickHouse) ingesting.
    max_backlog_bytes: int | None = Field(None, ge=1)
    # block: never skip (back-pressure through the spool); skip_oldest: over max_backlog_bytes, the oldest
    # undelivered records are skipped for this exporter only, counted in agentledger_spans_skipped_total.
    overflow: Literal["block", "skip_oldest"] = "block"

    @model_validator(mode="after")
    def _overflow_needs_a_bound(self) -> ExporterConfig:
        if self.overflow == "skip_oldest" and self.max_backlog_bytes is None:
            raise ValueError("overflow: skip_oldest needs max_backlog_bytes")
        return self


class RetentionConfig(FrozenModel):
    """How long spans are kept, by start time; 0 keeps them. Legal holds override it."""

    default_days: int = Field(0, ge=0)
    tenants: dict[str, int] = Field(default_factory=dict)

    @field_validator("tenants")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for tenant, days in value.items():
            if days < 0:
                raise ValueError(f"retention for tenant {tenant!r} must be 0 (keep) or more days, not {days}")
        return value


class ClickHouseExporterConfig(ExporterConfig):
    # Link every stored batch into its runs' tamper-evident hash chain (schema/AUDIT_CHAIN.md).
    audit_chain: bool = True
    # PEM Ed25519 private key (`agentledger keygen`): each chain link is signed, so a verifier holding the
    # public key can trust the chain without trusting the database.
    signing_key_file: Path | None = None
    retention: RetentionConfig = RetentionConfig()
    # This collector's log in the audit chain (v2): every collector writing to one database needs its own
    # id. Default: read from (or made once into) <data dir>/collector_id, so it is stable across restarts.
    collector_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # Where signed checkpoints of the log are also written, outside ClickHouse. Default:
    # <data dir>/checkpoints when the collector has a data folder.
    checkpoint_dir: Path | None = None
    # At most one checkpoint per log this often (seconds); 0 (default): after every batch, so a cut-off
    # tail is always caught. Links appended since the last checkpoint are reported as such.
    checkpoint_interval_s: float = Field(0, ge=0)


class SpoolConfig(FrozenModel):
    """The durable write-ahead spool between processors and exporters."""

    enabled: bool = True
    # Default: <data dir>/spool.
    directory: Path | None = None
    # always: fsync before acknowledging; interval: at most every fsync_interval_ms (a crash of the
    # machine may lose that window, a crash of the process loses nothing); never: leave it to the OS.
    fsync: Literal["always", "interval", "never"] = "always"
    fsync_interval_ms: int = Field(200, ge=1)
    max_bytes: int = Field(1024 * MiB, ge=MiB)
    segment_bytes: int = Field(64 * MiB, ge=64 * 1024)


class PipelineSpec(FrozenModel):
    receivers: tuple[str, ...] = ("otlp",)
    # normalize: third-party spans get their run id before export, when the run index sees them.
    # normalize first: it moves third-party content into the columns redaction then scans.
    processors: tuple[str, ...] = ("normalize", "redaction")
    exporters: tuple[str, ...] = ("clickhouse",)


class PipelinesConfig(FrozenModel):
    traces: PipelineSpec = PipelineSpec()


class ServiceConfig(FrozenModel):
    pipelines: PipelinesConfig = PipelinesConfig()
