"""Assembles receivers' consumer, processors and exporters from config: the only place components are wired."""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from agentledger.collector.component import Exporter, Processor, SpanBatch
from agentledger.collector.components import EXPORTERS, PROCESSORS
from agentledger.collector.config import PipelineConfig


class Pipeline:
    """Runs a batch through the processors in order, then hands it to every exporter.

    consume() returns only once every exporter has delivered the batch, so the receiver acknowledges
    nothing that is not stored.
    """

    def __init__(self, processors: Sequence[Processor], exporters: Sequence[Exporter]) -> None:
        self.processors = tuple(processors)
        self.exporters = tuple(exporters)

    def consume(self, batch: SpanBatch) -> None:
        for processor in self.processors:
            batch = processor.process(batch)
        if batch.num_rows == 0:
            return
        for exporter in self.exporters:
            exporter.export(batch)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()
        for exporter in self.exporters:
            exporter.shutdown()


def build_pipeline(config: PipelineConfig, client: Client) -> Pipeline:
    processors = [PROCESSORS[name](client) for name in config.processors]
    exporters = [EXPORTERS[name](client) for name in config.exporters]
    return Pipeline(processors, exporters)
