"""Drains the spool into one exporter on its own thread, with retries, so exporters never wait on each other."""

from __future__ import annotations

import logging
import threading
import time

from agentledger.collector.component import Exporter, ExportError
from agentledger.collector.config import ExporterConfig, RetryConfig
from agentledger.collector.retry import Backoff
from agentledger.collector.spool import ExportCursor, Position, Spool, SpoolError, concat_records
from agentledger.collector.telemetry import CollectorTelemetry

logger = logging.getLogger(__name__)


class ExportWorker:
    def __init__(
        self,
        name: str,
        exporter: Exporter,
        spool: Spool,
        telemetry: CollectorTelemetry,
        retry: RetryConfig,
        batch_max_spans: int,
        max_backlog_bytes: int | None = None,
    ) -> None:
        """`max_backlog_bytes` set: over it, the oldest undelivered records are skipped for this exporter
        (overflow `skip_oldest`); None: never skip."""
        self.name = name
        self.exporter = exporter
        self._spool = spool
        self._cursor: ExportCursor = spool.cursor(name)
        self._telemetry = telemetry
        self._backoff = Backoff(retry)
        self._batch_max_spans = batch_max_spans
        self._max_backlog_bytes = max_backlog_bytes
        self._stop = threading.Event()
        self._draining = False
        self._thread = threading.Thread(target=self._run, name=f"export-{name}", daemon=True)

    @classmethod
    def for_config(
        cls, name: str, exporter: Exporter, spool: Spool, telemetry: CollectorTelemetry, config: ExporterConfig
    ) -> ExportWorker:
        skip_over = config.max_backlog_bytes if config.overflow == "skip_oldest" else None
        return cls(name, exporter, spool, telemetry, config.retry, config.batch_max_spans, skip_over)

    def start(self) -> None:
        self._thread.start()

    def lag(self) -> Position:
        return self._cursor.committed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                exported = self._export_next()
            except SpoolError as error:
                # The disk failed under the spool (a cursor save, a read): the thread must outlive it, or
                # the backlog would never drain and the spool would refuse spans for good.
                self._telemetry.add("agentledger_export_failures_total", label=("exporter", self.name))
                logger.error("exporter %s: spool error (will retry): %s", self.name, error)
                if not self._backoff.wait(self._stop):
                    return
                continue
            if not exported:
                if self._draining:
                    return
                self._spool.wait_for_data(self._cursor.committed, timeout=0.5)

    def _export_next(self) -> bool:
        """Exports the planned or the next batch; returns False when there was nothing to export."""
        self._skip_overflow(self._cursor.planned[1] if self._cursor.planned is not None else None)
        if self._cursor.planned is not None:
            start, end = self._cursor.planned
            records = [r for r in self._spool.read(start, 2**62) if r.end <= end]
        else:
            start = self._cursor.committed
            records = self._spool.read(start, self._batch_max_spans)
            if not records:
                return False
            end = records[-1].end
            self._cursor.plan(start, end)
        batch = concat_records(records)
        batch_id = f"{self.name}:{start}-{end}"
        while batch.num_rows:
            began = time.perf_counter()
            try:
                self.exporter.export(batch, batch_id)
            except ExportError as error:
                self._telemetry.add("agentledger_export_failures_total", label=("exporter", self.name))
                logger.warning("exporter %s failed (will retry): %s", self.name, error)
                if not self._backoff.wait(self._stop):
                    return True  # stopping: the plan stays and is replayed at the next start
                if self._skip_overflow(end):
                    return True  # the batch in flight was the oldest backlog: skipped, not delivered
                continue
            self._telemetry.observe("agentledger_export_seconds", time.perf_counter() - began, ("exporter", self.name))
            self._telemetry.add("agentledger_spans_exported_total", batch.num_rows, ("exporter", self.name))
            self._backoff.reset()
            break
        self._cursor.commit(end)
        self._spool.release()
        return True

    def _skip_overflow(self, in_flight_end: Position | None) -> bool:
        """Skips the oldest undelivered records while the backlog exceeds max_backlog_bytes; with a batch in
        flight, at least that batch (its records are the oldest). Returns whether anything was skipped."""
        if self._max_backlog_bytes is None:
            return False
        start = self._cursor.committed
        if self._spool.bytes_after(start) <= self._max_backlog_bytes:
            return False
        position, spans = start, 0
        while self._spool.bytes_after(position) > self._max_backlog_bytes or (
            in_flight_end is not None and position < in_flight_end
        ):
            records = self._spool.read(position, 1)
            if not records:
                break
            for record in records:
                spans += record.batch.num_rows
                position = record.end
        if position == start:
            return False
        self._cursor.commit(position)
        self._spool.release()
        self._telemetry.add("agentledger_spans_skipped_total", spans, ("exporter", self.name))
        logger.error(
            "exporter %s is more than %d bytes behind: skipped %d undelivered spans (spool %s to %s)",
            self.name, self._max_backlog_bytes, spans, start, position,
        )  # fmt: skip
        return True

    def stop(self, drain_seconds: float) -> None:
        """Exports what the spool holds for up to drain_seconds, then stops; the rest waits for the next start."""
        self._draining = True
        self._thread.join(timeout=drain_seconds)
        self._stop.set()
        self._thread.join()
