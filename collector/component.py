"""The interfaces every collector component implements, after the OTel Collector's component model.

A batch is an Arrow table with schema.span_columns.SPAN_SCHEMA; components never see per-span objects.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, TypeAlias

import pyarrow as pa

SpanBatch: TypeAlias = pa.Table


class ExportError(RuntimeError):
    """An exporter could not deliver a batch; the pipeline must not acknowledge it. Retryable: the same batch
    may go through later (collector/export_errors.py decides which errors are which).

    `reason` is a short, bounded label (a ClickHouse error name, `http_503`) for logs, metrics and the
    dead-letter store. `destination_down`: the destination itself is unavailable (unreachable, overloaded,
    its table missing), not this batch's fault, so the worker retries without a cap while the spool holds
    the data; otherwise the export worker gives up after the retry cap and treats the error as permanent.
    """

    permanent: ClassVar[bool] = False

    def __init__(self, message: str, reason: str = "export_failed", *, destination_down: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.destination_down = destination_down


class PermanentExportError(ExportError):
    """Retrying the same batch cannot succeed (after the OTel Collector's `consumererror.NewPermanent`): the
    worker splits the batch to isolate the spans at fault and dead-letters them.

    `stored_rows`: row indices of the batch the destination did store before it refused the rest (an insert
    made of several blocks), so the worker isolates offenders among the other rows only."""

    permanent: ClassVar[bool] = True

    def __init__(self, message: str, reason: str = "permanent", *, stored_rows: pa.Array | None = None) -> None:
        super().__init__(message, reason)
        self.stored_rows = stored_rows


class Processor(Protocol):
    """Transforms a batch; returns the batch to pass on (possibly the same object)."""

    def process(self, batch: SpanBatch) -> SpanBatch: ...

    def shutdown(self) -> None: ...


class Exporter(Protocol):
    """Delivers a batch to one destination; raises ExportError when it cannot: PermanentExportError when
    the data itself is refused (the worker then isolates and dead-letters the spans at fault), ExportError
    with `destination_down` when the destination is away, plain ExportError otherwise (retried up to a cap).

    `batch_id` is stable: a retry or a replay after a restart of the same batch carries the same id,
    so a destination that can deduplicate (ClickHouse insert tokens) stores it exactly once.
    """

    def export(self, batch: SpanBatch, batch_id: str) -> None: ...

    def shutdown(self) -> None: ...


class PipelineFull(RuntimeError):
    """The pipeline holds all it may (the spool is at its limit): the sender should retry later (429)."""


class PipelineUnavailable(RuntimeError):
    """The pipeline cannot take data now (storage down with the spool off, disk error): retry later (503)."""


class PipelineRejected(RuntimeError):
    """A destination refused the spans for good (with the spool off, nothing sets them aside): waiting cannot
    help, so the sender is told not to retry (400 / INVALID_ARGUMENT) rather than to retry forever."""


class RequestTooLarge(RuntimeError):
    """The request can never be accepted, however long the sender waits (its decoded batch is over the
    per-request budget, or bigger than the whole spool): 413 / RESOURCE_EXHAUSTED without a retry hint."""
