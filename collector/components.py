"""The registry of component types: the only place a config type name maps to a config model and a factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from clickhouse_connect.driver.client import Client

from agentledger.collector.component import Exporter, Processor
from agentledger.collector.config import ClickHouseExporterConfig, ExporterConfig, FrozenModel, OtlpReceiverConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.exporters.phoenix import PhoenixExporter, PhoenixExporterConfig
from agentledger.collector.processors.normalize import NormalizeConfig, NormalizeProcessor
from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor
from agentledger.collector.telemetry import CollectorTelemetry

ConfigT = TypeVar("ConfigT", bound=FrozenModel)
ExporterConfigT = TypeVar("ExporterConfigT", bound=ExporterConfig)


@dataclass(frozen=True)
class ComponentContext:
    """What a factory may use besides its own config: shared resources owned by the service."""

    component_id: str
    client: Client
    telemetry: CollectorTelemetry
    # The service's data folder (None in embedded uses): where components keep small state files.
    data_dir: Path | None = None


@dataclass(frozen=True)
class ProcessorType(Generic[ConfigT]):
    config_model: type[ConfigT]
    create: Callable[[ConfigT, ComponentContext], Processor]


@dataclass(frozen=True)
class ExporterType(Generic[ExporterConfigT]):
    config_model: type[ExporterConfigT]
    create: Callable[[ExporterConfigT, ComponentContext], Exporter]


RECEIVERS: Mapping[str, type[FrozenModel]] = {
    "otlp": OtlpReceiverConfig,
}

PROCESSORS: Mapping[str, ProcessorType[Any]] = {
    "normalize": ProcessorType(NormalizeConfig, lambda config, context: NormalizeProcessor(config)),
    "redaction": ProcessorType(RedactionConfig, lambda config, context: RedactionProcessor(config)),
}

EXPORTERS: Mapping[str, ExporterType[Any]] = {
    "clickhouse": ExporterType(
        ClickHouseExporterConfig, lambda config, context: ClickHouseExporter(
            context.client, config, context.data_dir, context.telemetry
        )
    ),
    "phoenix": ExporterType(PhoenixExporterConfig, lambda config, context: PhoenixExporter(config)),
}


def component_type(component_id: str) -> str:
    """`redaction/strict` -> `redaction`: several instances of one type differ by the part after the slash."""
    return component_id.split("/", 1)[0]
