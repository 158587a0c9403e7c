"""Reads downstream writes from Parquet or CSV (pyarrow) into POST /v1/writes batches.

The import goes through the query API rather than into ClickHouse directly: `up` owns the embedded
data folder, and the API applies the caller's tenant and validates each write the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

REQUIRED: Final = ("run_id", "system", "ref", "action", "target", "occurred_at")
OPTIONAL: Final = ("tool_call_id", "title", "url", "actor")
BATCH_ROWS: Final = 5_000


class ImportFileError(ValueError):
    """The file cannot be read or lacks a column; the message names it."""


def read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
        if suffix == ".csv":
            # Every column as text: ids such as 00123 must not become numbers.
            return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=_all_text(path)))
    except (OSError, pa.ArrowInvalid) as error:
        raise ImportFileError(f"cannot read {path}: {error}") from error
    raise ImportFileError(f"{path} must be a .parquet or .csv file")


def _all_text(path: Path) -> dict[str, pa.DataType]:
    header = pa_csv.open_csv(path).schema.names
    return {name: pa.string() for name in header}


def _rfc3339_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        # %S carries the fraction at the column's unit (nanoseconds here); naive timestamps are taken as UTC.
        as_ns = pc.cast(column, pa.timestamp("ns", tz="UTC"))
        return pc.strftime(as_ns, format="%Y-%m-%dT%H:%M:%SZ")
    return pc.cast(column, pa.string())


def read_write_batches(path: Path) -> Iterator[tuple[int, list[dict[str, str]]]]:
    """(index of the first row, writes) per batch of at most BATCH_ROWS rows."""
    table = read_table(path)
    missing = [name for name in REQUIRED if name not in table.column_names]
    if missing:
        raise ImportFileError(f"{path} lacks the column(s) {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    columns = {
        name: (_rfc3339_column(table[name]) if name == "occurred_at" else pc.cast(table[name], pa.string()))
        for name in REQUIRED + OPTIONAL
        if name in table.column_names
    }
    for start in range(0, table.num_rows, BATCH_ROWS):
        values = {name: column.slice(start, BATCH_ROWS).to_pylist() for name, column in columns.items()}
        batch = []
        for index in range(len(values["run_id"])):
            write = {name: values[name][index] for name in values if values[name][index] is not None}
            for name in REQUIRED:
                write.setdefault(name, "")
            batch.append(write)
        yield start, batch
