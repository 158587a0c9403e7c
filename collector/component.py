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
    """Delivers a batch to one destination; raises ExportError when it cannot."""

    def export(self, batch: SpanBatch) -> None: ...

    def shutdown(self) -> None: ...
