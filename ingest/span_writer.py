"""Inserts columnar span batches into the spans table with clickhouse-connect's Arrow insert."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.ingest.clickhouse import first_line
from agentledger.schema.span_columns import SPAN_SCHEMA

SPANS_TABLE = "spans"


class WriteFailed(RuntimeError):
    """ClickHouse refused or could not take the batch; nothing of it may be acknowledged."""


class SpanWriter:
    def __init__(self, client: Client) -> None:
        self._client = client

    def insert(
        self, batch: pa.Table, deduplication_token: str = "", policy_columns: Mapping[str, pa.Array] | None = None
    ) -> None:
        """Inserts the batch; a repeated insert with the same non-empty token is dropped by ClickHouse
        (spans and the run index alike: migration 0002 turns on the deduplication window).

        `policy_columns` (retain_until, legal_hold) are stored but are not span content, so they are not
        part of the batch schema nor of the audit digest."""
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(SPAN_SCHEMA):  # checked before policy columns are added
            raise WriteFailed("batch does not have the spans schema (schema/span_columns.py)")
        for name, column in (policy_columns or {}).items():
            if name == "retain_until":
                column = pc.cast(column, pa.timestamp("s"))
            batch = batch.append_column(name, column)
        settings = {"deduplicate_blocks_in_dependent_materialized_views": 1}
        if deduplication_token:
            settings["insert_deduplication_token"] = deduplication_token  # type: ignore[assignment]
        try:
            self._client.insert_arrow(SPANS_TABLE, batch, settings=settings)
        except (ClickHouseError, OSError) as error:
            raise WriteFailed(f"insert into {SPANS_TABLE} failed: {first_line(error)}") from error
