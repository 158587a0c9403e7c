"""The registry of component factories by name: the only place a config name maps to a class."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from clickhouse_connect.driver.client import Client

from agentledger.collector.component import Exporter, Processor
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.processors.normalize import NormalizeConfig, NormalizeProcessor

# Factories take the shared resources a component may need (for now the ClickHouse client).
ProcessorFactory = Callable[[Client], Processor]
ExporterFactory = Callable[[Client], Exporter]

PROCESSORS: Mapping[str, ProcessorFactory] = {
    "normalize": lambda _client: NormalizeProcessor(NormalizeConfig()),
}

EXPORTERS: Mapping[str, ExporterFactory] = {
    "clickhouse": ClickHouseExporter,
}
