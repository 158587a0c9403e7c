"""Inserts columnar span batches into the spans table with clickhouse-connect's Arrow insert."""

from __future__ import annotations

import pyarrow as pa
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

    def insert(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(SPAN_SCHEMA):
            raise WriteFailed("batch does not have the spans schema (schema/span_columns.py)")
        try:
            self._client.insert_arrow(SPANS_TABLE, batch)
        except (ClickHouseError, OSError) as error:
            raise WriteFailed(f"insert into {SPANS_TABLE} failed: {first_line(error)}") from error
