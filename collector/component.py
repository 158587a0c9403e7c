"""The interfaces every collector component implements, after the OTel Collector's component model.

A batch is an Arrow table with schema.span_columns.SPAN_SCHEMA; components never see per-span objects.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

import pyarrow as pa

SpanBatch: TypeAlias = pa.Table


class ExportError(RuntimeError):
    """An exporter could not deliver a batch; the pipeline must not acknowledge it."""


class Processor(Protocol):
    """Transforms a batch; returns the batch to pass on (possibly the same object)."""

    def process(self, batch: SpanBatch) -> SpanBatch: ...

    def shutdown(self) -> None: ...


class Exporter(Protocol):
    """Delivers a batch to one destination; raises ExportError when it cannot.

    `batch_id` is stable: a retry or a replay after a restart of the same batch carries the same id,
    so a destination that can deduplicate (ClickHouse insert tokens) stores it exactly once.
    """

    def export(self, batch: SpanBatch, batch_id: str) -> None: ...

    def shutdown(self) -> None: ...


class PipelineFull(RuntimeError):
    """The pipeline holds all it may (the spool is at its limit): the sender should retry later (429)."""


class PipelineUnavailable(RuntimeError):
    """The pipeline cannot take data now (storage down with the spool off, disk error): retry later (503)."""


class RequestTooLarge(RuntimeError):
    """The request can never be accepted, however long the sender waits (its decoded batch is over the
    per-request budget, or bigger than the whole spool): 413 / RESOURCE_EXHAUSTED without a retry hint."""
