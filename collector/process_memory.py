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


def release_arrow_memory() -> None:
    """Returns the memory Arrow's pool holds free to the system. Arrow's default pool (mimalloc in the Linux
    wheels, jemalloc elsewhere) keeps what a batch freed for reuse: after each 20,000-span export some 200 MiB
    of freed batch, digest and insert buffers stayed resident, under the next batch's peak and as the
    steady-state floor. Called once per exported batch, when the batch is gone, it costs a few milliseconds."""
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
