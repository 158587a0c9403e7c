"""This process's memory as /metrics gauges: resident set, Arrow's memory pool and ClickHouse's own tracked
memory (embedded chDB runs inside the process), so a memory bound that does not hold shows which part grew."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.clickhouse import tracked_memory_bytes

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> float:
    """The resident set now (not the peak), from /proc/self/statm; NaN where there is no /proc."""
    try:
        return float(int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_BYTES)
    except (OSError, IndexError, ValueError):
        return math.nan


def arrow_allocated_bytes() -> float:
    return float(pa.total_allocated_bytes())


def use_returning_arrow_pool() -> str:
    """Makes Arrow allocate from its jemalloc pool with no decay, so freed batch memory leaves the resident set at
    once; returns the pool's backend name. Arrow's default in the Linux wheels, mimalloc, keeps freed pages in
    per-thread heaps for reuse: in the collector some 130-200 MiB of buffers of batches already exported (the
    receivers' decoding, digests, the insert) stayed resident under the next batch's peak and as the floor.
    Where Arrow is built without jemalloc the default pool stays, and release_arrow_memory returns its pages."""
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return str(pa.default_memory_pool().backend_name)
    pa.jemalloc_set_decay_ms(0)
    pa.set_memory_pool(pool)
    return str(pool.backend_name)


def release_arrow_memory() -> None:
    """Returns the memory Arrow's pool holds free to the system (nothing left to do for the pool of
    use_returning_arrow_pool). Called once per exported batch, when the batch is gone."""
    pa.default_memory_pool().release_unused()


def register_memory_gauges(telemetry: CollectorTelemetry, client: Client) -> None:
    def clickhouse_tracked() -> float:
        try:
            return tracked_memory_bytes(client)
        except ClickHouseError:
            return math.nan  # a scrape must not fail because storage is busy or down

    telemetry.gauge("agentledger_process_resident_bytes", "Resident memory of this process.", resident_bytes)
    telemetry.gauge(
        "agentledger_arrow_allocated_bytes", "Bytes held in Arrow's memory pool (span batches).", arrow_allocated_bytes
    )
    telemetry.gauge(
        "agentledger_clickhouse_tracked_memory_bytes",
        "ClickHouse's own tracked memory (MemoryTracking): with embedded chDB, part of this process's resident"
        " memory; with a server DSN, the server's.",
        clickhouse_tracked,
    )
