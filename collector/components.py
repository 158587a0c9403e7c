"""The registry of component factories by name: the only place a config name maps to a class."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from clickhouse_connect.driver.client import Client

from agentledger.collector.component import Exporter, Processor
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor

# Factories take the shared resources a component may need (for now the ClickHouse client).
ProcessorFactory = Callable[[Client], Processor]
ExporterFactory = Callable[[Client], Exporter]


def _redaction(_client: Client) -> Processor:
    # Until component configs come from the YAML file, redaction runs with its safe defaults: mask mode,
    # no HMAC key needed. With a config, build RedactionProcessor(RedactionConfig(**section)) instead.
    return RedactionProcessor(RedactionConfig())


PROCESSORS: Mapping[str, ProcessorFactory] = {
    "redaction": _redaction,
}

EXPORTERS: Mapping[str, ExporterFactory] = {
    "clickhouse": ClickHouseExporter,
}
