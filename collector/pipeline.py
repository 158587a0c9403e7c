"""Assembles the traces pipeline from config: the only place components are wired.

receiver -> processors -> spool (acknowledge here) -> one export worker per exporter -> destinations.
With the spool disabled, consume() exports synchronously and acknowledges only what every exporter took.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

from clickhouse_connect.driver.client import Client

from agentledger.collector.component import (
    Exporter,
    ExportError,
    PermanentExportError,
    PipelineFull,
    PipelineRejected,
    PipelineUnavailable,
    Processor,
    RequestTooLarge,
    SpanBatch,
)
from agentledger.collector.components import EXPORTERS, PROCESSORS, ComponentContext, component_type
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.deadletter import DeadLetterStore
from agentledger.collector.export_worker import ExportWorker
from agentledger.collector.process_memory import register_memory_gauges
from agentledger.collector.spool import RecordTooLarge, Spool, SpoolError, SpoolFull
from agentledger.collector.telemetry import CollectorTelemetry

logger = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        processors: Sequence[Processor],
        exporters: Sequence[tuple[str, Exporter]],
        spool: Spool | None = None,
        workers: Sequence[ExportWorker] = (),
    ) -> None:
        self.processors = tuple(processors)
        self.exporters = tuple(exporters)
        self.spool = spool
        self.workers = tuple(workers)

    def consume(self, batch: SpanBatch) -> None:
        """Returns once the batch is durable (in the spool, or delivered everywhere without one)."""
        for processor in self.processors:
            batch = processor.process(batch)
        if batch.num_rows == 0:
            return
        if self.spool is not None:
            try:
                self.spool.append(batch)
            except RecordTooLarge as error:
                raise RequestTooLarge(str(error)) from error
            except SpoolFull as error:
                raise PipelineFull(str(error)) from error
            except SpoolError as error:
                raise PipelineUnavailable(str(error)) from error
            return
        batch_id = f"direct:{uuid.uuid4()}"
        for name, exporter in self.exporters:
            try:
                exporter.export(batch, batch_id)
            except PermanentExportError as error:
                raise PipelineRejected(f"exporter {name}: {error}") from error
            except ExportError as error:
                raise PipelineUnavailable(f"exporter {name}: {error}") from error

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def shutdown(self, drain_seconds: float = 10.0) -> None:
        for worker in self.workers:
            worker.stop(drain_seconds)
        for processor in self.processors:
            processor.shutdown()
        for _, exporter in self.exporters:
            exporter.shutdown()
        if self.spool is not None:
            self.spool.close()


def build_pipeline(
    config: CollectorConfig,
    client: Client,
    telemetry: CollectorTelemetry,
    spool_directory: Path | None,
    data_dir: Path | None = None,
) -> Pipeline:
    """Builds processors, exporters and (when enabled) the spool with one export worker per exporter.

    `spool_directory` is where the spool lives unless `spool.directory` is configured.
    """
    register_memory_gauges(telemetry, client)
    processors = []
    for component_id in config.pipeline.processors:
        context = ComponentContext(component_id, client, telemetry)
        processors.append(PROCESSORS[component_type(component_id)].create(config.processors[component_id], context))
    exporters: list[tuple[str, Exporter]] = []
    for component_id in config.pipeline.exporters:
        context = ComponentContext(component_id, client, telemetry, data_dir)
        exporter = EXPORTERS[component_type(component_id)].create(config.exporters[component_id], context)
        exporters.append((component_id, exporter))
    if not config.spool.enabled:
        logger.warning("the spool is off: requests wait for every exporter, and fail when one is down")
        return Pipeline(processors, exporters)
    directory = config.spool.directory or spool_directory
    if directory is None:
        raise ValueError("spool.directory is not set and no data folder was given")
    spool = Spool(directory, config.spool, telemetry)
    workers = []
    for component_id, exporter in exporters:
        exporter_config = config.exporters[component_id]
        workers.append(ExportWorker.for_config(component_id, exporter, spool, telemetry, exporter_config))
    telemetry.gauge("agentledger_spool_bytes", "Bytes in spool segments on disk.", spool.total_bytes)
    telemetry.gauge(
        "agentledger_spool_unexported_bytes", "Spool bytes some exporter has not delivered yet.", spool.pending_bytes
    )
    telemetry.gauge(
        "agentledger_spool_oldest_unexported_age_seconds",
        "Age of the oldest spool segment holding undelivered spans.",
        spool.oldest_unexported_age,
    )
    telemetry.gauge(
        "agentledger_spool_quarantined_segments",
        "Spool files set aside whole because they are not segments (damaged records are counted one by one).",
        lambda: float(spool.quarantined_segments),
    )
    for worker in workers:
        telemetry.gauge(
            "agentledger_deadletter_entries",
            "Dead-letter entries held on disk, by exporter, waiting for a replay or deletion.",
            functools.partial(_entries_held, worker.dead_letters),
            ("exporter", worker.name),
        )
    return Pipeline(processors, exporters, spool, workers)


def _entries_held(store: DeadLetterStore) -> float:
    return float(store.count())
