"""Exports span batches to the ClickHouse spans table through ingest/, and links them into each run's
audit hash chain (ingest/audit_chain.py) right after they are stored."""

from __future__ import annotations

import time

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.collector.component import ExportError, SpanBatch
from agentledger.ingest.audit_chain import ChainWriter
from agentledger.ingest.clickhouse import first_line
from agentledger.ingest.span_writer import SpanWriter, WriteFailed


class ClickHouseExporter:
    def __init__(self, client: Client, audit_chain: bool = True) -> None:
        self._writer = SpanWriter(client)
        self._chain = ChainWriter(client) if audit_chain else None

    def export(self, batch: SpanBatch, batch_id: str) -> None:
        try:
            self._writer.insert(batch, deduplication_token=batch_id)
            if self._chain is not None:
                # Links are computed after the spans are stored and carry their own token, so a replay
                # neither duplicates them nor chains a batch twice.
                links = self._chain.links_for(batch, time.time_ns())
                self._chain.append(links, deduplication_token=f"{batch_id}:chain")
        except WriteFailed as error:
            raise ExportError(str(error)) from error
        except ClickHouseError as error:
            raise ExportError(f"audit chain: {first_line(error)}") from error

    def shutdown(self) -> None:
        """The client is shared and closed by its owner."""
