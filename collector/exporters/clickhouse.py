"""Exports span batches to the ClickHouse spans table through ingest/: stamps retention and legal holds,
keeps stored spans immutable (re-sends are dropped or kept apart as conflicts), then links the stored
spans into this collector's audit log and checkpoints it (ingest/audit_chain.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Final

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.collector.component import ExportError, PermanentExportError, SpanBatch
from agentledger.collector.config import ClickHouseExporterConfig, ConfigError
from agentledger.collector.export_errors import classify_clickhouse
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.audit_chain import CONFLICTS_TABLE, ChainWriter, Screened, digests_of_batch, rows_of_batch
from agentledger.ingest.checkpoints import CheckpointSink
from agentledger.ingest.clickhouse import first_line
from agentledger.ingest.retention import AgentHolds, RetentionPolicy
from agentledger.ingest.signing import LinkSigner, SigningKeyError
from agentledger.ingest.span_writer import SpanWriter, WriteFailed
from agentledger.schema.span_columns import SPAN_SCHEMA, with_added_columns

logger = logging.getLogger(__name__)

# Without a data folder (embedded uses, tests) and no configured id, the log is this one.
DEFAULT_COLLECTOR_ID: Final = "collector"
COLLECTOR_ID_FILE: Final = "collector_id"
_COLLECTOR_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def resolve_collector_id(config: ClickHouseExporterConfig, data_dir: Path | None) -> str:
    """The configured id, else the one kept in <data dir>/collector_id (made on first start)."""
    if config.collector_id is not None:
        return config.collector_id
    if data_dir is None:
        return DEFAULT_COLLECTOR_ID
    path = data_dir / COLLECTOR_ID_FILE
    try:
        if path.exists():
            value = path.read_text(encoding="utf-8").strip()
            if not _COLLECTOR_ID.match(value):
                raise ConfigError(f"exporters.clickhouse.collector_id: {path} holds {value!r}, which is not a"
                                  " collector id (letters, digits, . _ -, at most 64)")  # fmt: skip
            return value
        value = f"collector-{uuid.uuid4().hex[:12]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n", encoding="utf-8")
        return value
    except OSError as error:
        raise ConfigError(f"exporters.clickhouse.collector_id: cannot keep it in {path}: {error.strerror}") from None


def signer_of(config: ClickHouseExporterConfig) -> LinkSigner | None:
    if config.signing_key_file is None:
        return None
    try:
        return LinkSigner.from_file(config.signing_key_file)
    except SigningKeyError as error:
        raise ConfigError(f"exporters.clickhouse.signing_key_file: {error}") from None


def checkpoint_sink_of(config: ClickHouseExporterConfig, data_dir: Path | None) -> CheckpointSink | None:
    directory = config.checkpoint_dir or (data_dir / "checkpoints" if data_dir is not None else None)
    return CheckpointSink(directory) if directory is not None else None


class ClickHouseExporter:
    def __init__(
        self,
        client: Client,
        config: ClickHouseExporterConfig | None = None,
        data_dir: Path | None = None,
        telemetry: CollectorTelemetry | None = None,
    ) -> None:
        config = config or ClickHouseExporterConfig()
        self._client = client
        self._writer = SpanWriter(client)
        self._telemetry = telemetry or CollectorTelemetry()
        self.collector_id = resolve_collector_id(config, data_dir)
        signer = signer_of(config)
        sink = checkpoint_sink_of(config, data_dir)
        interval_ns = int(config.checkpoint_interval_s * 1e9)
        self._chain = (ChainWriter(client, self.collector_id, signer, sink, checkpoint_interval_ns=interval_ns)
                       if config.audit_chain else None)  # fmt: skip
        self._retention = RetentionPolicy(config.retention.default_days, dict(config.retention.tenants))
        self._holds = AgentHolds(client)

    def export(self, batch: SpanBatch, batch_id: str) -> None:
        batch = with_added_columns(batch)
        if not batch.schema.equals(SPAN_SCHEMA):  # before retention and holds read its columns
            raise PermanentExportError(
                "batch does not have the spans schema (schema/span_columns.py)", "schema_mismatch"
            )
        try:
            if self._chain is None:
                self._insert(batch, batch_id, self._retention.retain_until(batch))
                return
            digests = digests_of_batch(batch)
            screened = self._chain.screen(batch, digests)
            self._record_conflicts(batch, digests, screened)
            kept = batch if all(screened.keep) else batch.filter(pa.array(screened.keep))
            if kept.num_rows:
                kept_digests = [d for d, keep in zip(digests, screened.keep, strict=True) if keep]
                token = batch_id if kept.num_rows == batch.num_rows else _subset_token(batch_id, kept_digests)
                retain_until = self._retention.retain_until(kept)
                try:
                    self._insert(kept, token, retain_until)
                except WriteFailed as error:
                    if error.stored_rows is not None and classify_clickhouse(
                        error.__cause__ or error, "insert into spans", error.stored_rows
                    ).permanent:
                        self._link_stored_part(kept, kept_digests, error.stored_rows, retain_until)
                    raise
                links = self._chain.links_for(kept, time.time_ns(), retain_until.to_pylist(), kept_digests)
                self._chain.append(links)
            else:
                self._chain.checkpoint_pending(set(batch["tenant"].to_pylist()))
            if screened.duplicates:
                self._telemetry.add("agentledger_spans_resent_total", screened.duplicates)
        except WriteFailed as error:
            raise classify_clickhouse(error.__cause__ or error, "insert into spans", error.stored_rows) from error
        except ClickHouseError as error:
            # Holds and chain links are not the spans' fault, and the spans may be stored already (bisecting
            # would insert them again under other tokens): retried without a cap, never dead-lettered.
            raise ExportError(
                f"audit chain or holds: {first_line(error)}", "audit_chain_or_holds", destination_down=True
            ) from error

    def _link_stored_part(
        self, batch: SpanBatch, digests: list[str], stored_rows: pa.Array, retain_until: pa.Array
    ) -> None:
        """Some insert blocks were stored before ClickHouse refused a later one: their rows are linked now,
        so the worker's bisect finds them chained (screened out as exact re-sends) and isolates the
        offenders among the other rows only."""
        assert self._chain is not None
        rows = stored_rows.to_pylist()
        try:
            links = self._chain.links_for(
                batch.take(stored_rows), time.time_ns(), retain_until.take(stored_rows).to_pylist(),
                [digests[row] for row in rows],
            )  # fmt: skip
            self._chain.append(links)
        except ClickHouseError as error:
            raise ExportError(
                f"audit chain: {first_line(error)}", "audit_chain_or_holds", destination_down=True
            ) from error

    def _insert(self, batch: SpanBatch, token: str, retain_until: pa.Array) -> None:
        legal_hold = self._holds.legal_hold(batch)
        self._writer.insert(
            batch, deduplication_token=token, policy_columns={"retain_until": retain_until, "legal_hold": legal_hold}
        )

    def _record_conflicts(self, batch: SpanBatch, digests: list[str], screened: Screened) -> None:
        """Re-sends of stored span ids with other content: kept as evidence, never stored as spans."""
        if not screened.conflicts:
            return
        rows = rows_of_batch(batch.take([index for index, _, _ in screened.conflicts]))
        now = time.time_ns()
        records = []
        for row, (index, chained, version) in zip(rows, screened.conflicts, strict=True):
            records.append([row["tenant"], row["run_id"], row["trace_id"], row["span_id"], self.collector_id, now,
                            version, chained, digests[index],
                            json.dumps(row, ensure_ascii=False, default=str, sort_keys=True)])  # fmt: skip
        self._client.insert(
            CONFLICTS_TABLE,
            records,
            column_names=["tenant", "run_id", "trace_id", "span_id", "collector_id", "received_at", "digest_version",
                          "chained_digest", "received_digest", "span_json"],
        )  # fmt: skip
        self._telemetry.add("agentledger_span_conflicts_total", len(records))

    def shutdown(self) -> None:
        """Checkpoints what an interval held back; the client is shared and closed by its owner."""
        if self._chain is not None:
            try:
                self._chain.checkpoint_pending(force=True)
            except (ClickHouseError, OSError) as error:
                logger.error("audit checkpoint at shutdown failed: %s", first_line(error))


def _subset_token(batch_id: str, digests: list[str]) -> str:
    """A replayed batch that was partly stored already keeps a token of its own: the same rows give the
    same token (ClickHouse drops the copy), other rows a new one (a token must never drop other rows)."""
    return f"{batch_id}:{hashlib.sha256(''.join(digests).encode()).hexdigest()[:16]}"
