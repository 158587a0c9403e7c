"""Inserts columnar span batches into the spans table as an Arrow IPC stream, one record batch at a time."""

from __future__ import annotations

from collections.abc import Generator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.ingest.clickhouse import first_line
from agentledger.schema.span_columns import SPAN_SCHEMA

SPANS_TABLE = "spans"
# The spans table is PARTITION BY toDate(start_time) and ClickHouse refuses an insert block touching more than
# max_partitions_per_insert_block (100 by default) partitions. Rows are grouped by UTC day; toDate uses the
# server's time zone, where one UTC day can straddle two dates, so a block holds at most half the limit.
DAYS_PER_INSERT_BLOCK = 50
# ClickHouse's input format for an Arrow IPC stream: read one record batch at a time (the blocks of one insert are
# still squashed into one block and one part, up to min_insert_block_size_rows/bytes, as for the file format).
INSERT_FORMAT = "ArrowStream"


class WriteFailed(RuntimeError):
    """ClickHouse refused or could not take the batch; nothing of it may be acknowledged.

    `stored_rows`: row indices of the blocks stored before the failing one (a batch over more days than one
    block may hold is inserted as several blocks), None when none was."""

    def __init__(self, message: str, stored_rows: pa.Array | None = None) -> None:
        super().__init__(message)
        self.stored_rows = stored_rows


class SpanWriter:
    def __init__(self, client: Client) -> None:
        self._client = client

    def insert(
        self, batch: pa.Table, deduplication_token: str = "", policy_columns: Mapping[str, pa.Array] | None = None
    ) -> None:
        """Inserts the batch; a repeated insert with the same non-empty token is dropped by ClickHouse
        (spans and the run index alike: migration 0002 turns on the deduplication window).

        A batch spanning more than DAYS_PER_INSERT_BLOCK days is inserted as one block per group of days, in
        date order, each under `token:<first day>`, so a replay of the same batch repeats the same blocks.

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
        blocks = _blocks_by_days(batch)
        stored: list[pa.Array] = []
        for first_day, rows in blocks:
            block = batch if len(blocks) == 1 else batch.take(rows)
            if deduplication_token and len(blocks) > 1:
                settings["insert_deduplication_token"] = f"{deduplication_token}:{first_day}"  # type: ignore[assignment]
            try:
                self._client.raw_insert(
                    SPANS_TABLE, block.schema.names, ipc_stream(block, self._client.write_compression),
                    settings=settings, fmt=INSERT_FORMAT,
                )  # fmt: skip
            except (ClickHouseError, OSError) as error:
                stored_rows = pa.concat_arrays(stored) if stored else None
                raise WriteFailed(f"insert into {SPANS_TABLE} failed: {first_line(error)}", stored_rows) from error
            stored.append(rows)


def ipc_stream(table: pa.Table, compression: str | None = None) -> Generator[bytes, None, None]:
    """The table as an Arrow IPC stream, yielded message by message (the schema, then each record batch).

    clickhouse-connect's insert_arrow writes the whole table into one in-memory Arrow file first: a second copy
    of the batch (~60 MB per 20,000 agent spans) alive for the whole insert, on top of the batch and of what
    ClickHouse builds from it. Yielded piecewise, the client copies each record batch onward (to chDB's input
    file, or to the HTTP request body) and drops it. `compression` (the client's write_compression): lz4 or
    zstd compress the record batch bodies, as insert_arrow does; anything else leaves them plain."""
    options = pa.ipc.IpcWriteOptions(compression=compression) if compression in ("lz4", "zstd") else None
    pending: list[bytes] = []
    sink = pa.PythonFile(_Pieces(pending), mode="w")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        for record_batch in table.to_batches():
            writer.write_batch(record_batch)
            yield b"".join(pending)
            pending.clear()
    yield b"".join(pending)  # the end-of-stream marker


class _Pieces:
    """A write-only file that keeps what is written, for the IPC writer to write messages into."""

    closed = False

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _blocks_by_days(batch: pa.Table) -> list[tuple[str, pa.Array]]:
    """(first UTC day, row indices) of each insert block, in date order; rows keep their order in a block."""
    days = pc.cast(batch["start_time"], pa.date32())
    distinct = pc.unique(days).sort()
    if len(distinct) <= DAYS_PER_INSERT_BLOCK:
        return [(str(distinct[0]) if len(distinct) else "", pa.array(range(batch.num_rows), pa.uint64()))]
    blocks = []
    for first in range(0, len(distinct), DAYS_PER_INSERT_BLOCK):
        group = distinct.slice(first, DAYS_PER_INSERT_BLOCK)
        rows = pc.indices_nonzero(pc.is_in(days, value_set=group))
        blocks.append((str(group[0]), rows))
    return blocks
