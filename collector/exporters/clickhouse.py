"""Exports span batches to the ClickHouse spans table through ingest/: stamps retention and legal holds,
then links the stored spans into each run's audit hash chain (ingest/audit_chain.py)."""

from __future__ import annotations

import time

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.collector.component import ExportError, PermanentExportError, SpanBatch
from agentledger.collector.config import ClickHouseExporterConfig, ConfigError
from agentledger.collector.export_errors import classify_clickhouse
from agentledger.ingest.audit_chain import ChainWriter
from agentledger.ingest.clickhouse import first_line
from agentledger.ingest.retention import AgentHolds, RetentionPolicy
from agentledger.ingest.signing import LinkSigner, SigningKeyError
from agentledger.ingest.span_writer import SpanWriter, WriteFailed
from agentledger.schema.span_columns import SPAN_SCHEMA


class ClickHouseExporter:
    def __init__(self, client: Client, config: ClickHouseExporterConfig | None = None) -> None:
        config = config or ClickHouseExporterConfig()
        self._writer = SpanWriter(client)
        signer = None
        if config.signing_key_file is not None:
            try:
                signer = LinkSigner.from_file(config.signing_key_file)
            except SigningKeyError as error:
                raise ConfigError(f"exporters.clickhouse.signing_key_file: {error}") from None
        self._chain = ChainWriter(client, signer) if config.audit_chain else None
        self._retention = RetentionPolicy(config.retention.default_days, dict(config.retention.tenants))
        self._holds = AgentHolds(client)

    def export(self, batch: SpanBatch, batch_id: str) -> None:
        if not batch.schema.equals(SPAN_SCHEMA):  # before retention and holds read its columns
            raise PermanentExportError(
                "batch does not have the spans schema (schema/span_columns.py)", "schema_mismatch"
            )
        try:
            retain_until = self._retention.retain_until(batch)
            legal_hold = self._holds.legal_hold(batch)
            self._writer.insert(
                batch,
                deduplication_token=batch_id,
                policy_columns={"retain_until": retain_until, "legal_hold": legal_hold},
            )
            if self._chain is not None:
                # Links are computed after the spans are stored and carry their own token, so a replay
                # neither duplicates them nor chains a batch twice.
                links = self._chain.links_for(batch, time.time_ns(), retain_until.to_pylist())
                self._chain.append(links, deduplication_token=f"{batch_id}:chain")
        except WriteFailed as error:
            classified = classify_clickhouse(error.__cause__ or error, "insert into spans", error.stored_rows)
            if classified.permanent and error.stored_rows is not None:
                self._link_stored_part(batch, batch_id, error.stored_rows, retain_until)
            raise classified from error
        except ClickHouseError as error:
            # Holds and chain links are not the spans' fault, and the spans may be stored already (bisecting
            # would insert them again under other tokens): retried without a cap, never dead-lettered.
            raise ExportError(
                f"audit chain or holds: {first_line(error)}", "audit_chain_or_holds", destination_down=True
            ) from error

    def _link_stored_part(self, batch: SpanBatch, batch_id: str, stored_rows: pa.Array, retain_until: pa.Array) -> None:
        """The worker isolates the offenders among the other rows only, so the rows stored already are linked
        now, under their own token (a replay of this batch is refused at the same block)."""
        if self._chain is None:
            return
        try:
            links = self._chain.links_for(
                batch.take(stored_rows), time.time_ns(), retain_until.take(stored_rows).to_pylist()
            )
            self._chain.append(links, deduplication_token=f"{batch_id}:chain:stored")
        except ClickHouseError as error:
            raise ExportError(
                f"audit chain: {first_line(error)}", "audit_chain_or_holds", destination_down=True
            ) from error

    def shutdown(self) -> None:
        """The client is shared and closed by its owner."""
