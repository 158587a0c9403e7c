"""Memory of the export path (issue 16): the insert streams the batch record batch by record batch, digests are
serialised slice by slice, and Arrow's freed memory leaves the resident set. Memory is measured in subprocesses
(a fresh Arrow pool and resident set), as counts of bytes, never as times."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from agentledger.ingest.span_writer import SpanWriter, ipc_stream
from tests.collector.span_batches import span_columns_table


def _run(script: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def _chunked_batch(chunks: int, rows_per_chunk: int, content_bytes: int) -> pa.Table:
    """A spans batch of several record batches, as the export worker builds one from spool records."""
    tables = []
    for chunk in range(chunks):
        ids = [f"s{chunk}-{row}" for row in range(rows_per_chunk)]
        tables.append(span_columns_table(
            rows_per_chunk, run_id=["run-memory"] * rows_per_chunk, trace_id=["t"] * rows_per_chunk, span_id=ids,
            input_value=[f"{span_id}:" + "x" * content_bytes for span_id in ids],
        ))  # fmt: skip
    return pa.concat_tables(tables)


def test_the_insert_stream_holds_one_record_batch_at_a_time_and_reads_back_as_the_batch() -> None:
    batch = _chunked_batch(chunks=4, rows_per_chunk=50, content_bytes=2000)

    pieces = list(ipc_stream(batch))

    # The schema with the first record batch, one piece per further batch, then the end-of-stream marker.
    assert len(pieces) == 5
    assert pieces[-1] == b"\xff\xff\xff\xff\x00\x00\x00\x00"
    assert max(len(piece) for piece in pieces) < batch.nbytes / 3
    assert pa.ipc.open_stream(pa.py_buffer(b"".join(pieces))).read_all().equals(batch)


def test_a_compressed_insert_stream_reads_back_as_the_batch() -> None:
    batch = _chunked_batch(chunks=2, rows_per_chunk=20, content_bytes=5000)

    pieces = list(ipc_stream(batch, "zstd"))

    assert sum(map(len, pieces)) < batch.nbytes / 10
    assert pa.ipc.open_stream(pa.py_buffer(b"".join(pieces))).read_all().equals(batch)


def test_a_batch_of_several_record_batches_is_stored_as_one_part_with_its_values(client: Client) -> None:
    batch = _chunked_batch(chunks=3, rows_per_chunk=40, content_bytes=100)

    SpanWriter(client).insert(batch, deduplication_token="memory:1")
    SpanWriter(client).insert(batch, deduplication_token="memory:1")  # a replay: dropped as before

    rows = client.query("SELECT span_id, input_value FROM spans ORDER BY span_id").result_rows
    expected = [(f"s{chunk}-{row}", f"s{chunk}-{row}:" + "x" * 100) for chunk in range(3) for row in range(40)]
    assert rows == sorted(expected)
    parts = client.query(
        "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'spans' AND active"
    ).result_rows
    assert parts == [(1,)]


_DIGEST_PEAK = """
import pyarrow as pa
from agentledger.ingest.audit_chain import DIGEST_SLICE_ROWS, digests_of_batch, rows_of_batch, span_digest
from tests.collector.span_batches import span_columns_table
rows = 3 * DIGEST_SLICE_ROWS
batch = span_columns_table(
    rows, span_id=[f"s{row}" for row in range(rows)], input_value=[f"{row}:" + "x" * 2000 for row in range(rows)]
)
pool = pa.default_memory_pool()
content = batch.column("input_value").nbytes
before = pool.max_memory()
digests = digests_of_batch(batch)
sample = [0, DIGEST_SLICE_ROWS - 1, DIGEST_SLICE_ROWS, rows - 1]
every_row = rows_of_batch(batch.take(sample))
print(content, pool.max_memory() - before, len(digests), len(set(digests)),
      [digests[row] for row in sample] == [span_digest(row) for row in every_row])
"""


def test_digests_of_a_large_batch_are_serialised_a_slice_at_a_time() -> None:
    content, peak_growth, digests, distinct, equal = _run(_DIGEST_PEAK)

    # Serialising the whole batch at once combined every column and joined every row: twice the content.
    assert int(peak_growth) < int(content) / 2
    assert (digests, distinct, equal) == ("12288", "12288", "True")


_ARROW_POOL = """
import re, threading
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc
from agentledger.collector.process_memory import use_returning_arrow_pool

def anonymous_mib():
    return int(re.search(r"RssAnon:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024

print(use_returning_arrow_pool())
text = pa.array(["y" * 3000] * 1000)
before = anonymous_mib()

def batches():  # as the receivers and the export worker do: batches built and dropped on several threads
    built = [pc.binary_join_element_wise(text, text, "") for _ in range(40)]
    del built

threads = [threading.Thread(target=batches) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
del text
print(pa.total_allocated_bytes() // 2**20, anonymous_mib() - before)
"""


def test_arrow_memory_freed_on_several_threads_leaves_the_resident_set() -> None:
    backend, allocated_mib, resident_growth_mib = _run(_ARROW_POOL)

    # ~700 MiB were built and dropped; mimalloc, Arrow's default, kept ~570 MiB of them resident.
    assert (backend, allocated_mib) == ("jemalloc", "0")
    assert int(resident_growth_mib) < 64
