"""Exports span batches to the ClickHouse spans table through ingest/."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from agentledger.collector.component import ExportError, SpanBatch
from agentledger.ingest.span_writer import SpanWriter, WriteFailed


class ClickHouseExporter:
    def __init__(self, client: Client) -> None:
        self._writer = SpanWriter(client)

    def export(self, batch: SpanBatch, batch_id: str) -> None:
        try:
            self._writer.insert(batch, deduplication_token=batch_id)
        except WriteFailed as error:
            raise ExportError(str(error)) from error

    def shutdown(self) -> None:
        """The client is shared and closed by its owner."""
