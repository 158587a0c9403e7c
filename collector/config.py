"""Typed, frozen configuration of the collector, validated when built; errors name the offending key."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentledger.collector.components import EXPORTERS, PROCESSORS


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


def _check_port(key: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key} must be a TCP port between 0 and 65535, not {port}")


@dataclass(frozen=True)
class OtlpHttpReceiverConfig:
    host: str = "127.0.0.1"
    port: int = 4318
    # Compressed and decompressed bodies alike; the OTel Collector's default is 20 MiB.
    max_request_bytes: int = 16 * 1024 * 1024
    # Tenant stamped on spans until authenticated receivers map tokens to tenants.
    tenant: str = "default"

    def __post_init__(self) -> None:
        _check_port("receivers.otlp.http.port", self.port)
        if self.max_request_bytes < 1024:
            raise ConfigError("receivers.otlp.http.max_request_bytes must be at least 1024")
        if not self.tenant:
            raise ConfigError("receivers.otlp.http.tenant must not be empty")


@dataclass(frozen=True)
class PipelineConfig:
    # Redaction is on by default: its defaults only mask, so they need no key and lose no correlation ids.
    processors: tuple[str, ...] = ("redaction",)
    exporters: tuple[str, ...] = ("clickhouse",)

    def __post_init__(self) -> None:
        for name in self.processors:
            if name not in PROCESSORS:
                known = ", ".join(sorted(PROCESSORS)) or "none yet"
                raise ConfigError(f"service.pipelines.traces.processors: unknown processor {name!r} (known: {known})")
        if not self.exporters:
            raise ConfigError("service.pipelines.traces.exporters must name at least one exporter")
        for name in self.exporters:
            if name not in EXPORTERS:
                known = ", ".join(sorted(EXPORTERS))
                raise ConfigError(f"service.pipelines.traces.exporters: unknown exporter {name!r} (known: {known})")


@dataclass(frozen=True)
class CollectorConfig:
    http: OtlpHttpReceiverConfig = field(default_factory=OtlpHttpReceiverConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
