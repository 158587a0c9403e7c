"""Drains the spool into one exporter on its own thread, so exporters never wait on each other.

Retryable failures are retried with back-off (up to the retry cap unless the destination is down); a batch
refused for good is split in halves until the spans at fault are isolated: the rest is delivered and those
go to the dead-letter store (collector/deadletter.py), durably, before the cursor moves past them.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pyarrow as pa

from agentledger.collector.component import Exporter, ExportError, PermanentExportError, SpanBatch
from agentledger.collector.config import ExporterConfig, RetryConfig
from agentledger.collector.deadletter import DeadLetterEntry, DeadLetterError, DeadLetterStore
from agentledger.collector.process_memory import release_arrow_memory
from agentledger.collector.retry import Backoff
from agentledger.collector.spool import ExportCursor, Position, Spool, SpoolError, SpoolRecord, concat_records
from agentledger.collector.telemetry import CollectorTelemetry

logger = logging.getLogger(__name__)

# How often a running worker looks for dead-letter entries marked for replay.
REPLAY_POLL_SECONDS = 1.0


class _Stopped(Exception):
    """The worker is stopping, or the batch in flight was skipped as overflow: do not commit."""


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
        self._retry = retry
        self._backoff = Backoff(retry)
        self._batch_max_spans = batch_max_spans
        self._max_backlog_bytes = max_backlog_bytes
        self.dead_letters = DeadLetterStore(spool.directory, name)
        self._next_replay_poll = 0.0
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
                replayed = self._replay_marked()
                exported = self._export_next()
            except _Stopped:
                return
            except SpoolError as error:
                # The disk failed under the spool (a cursor save, a read): the thread must outlive it, or
                # the backlog would never drain and the spool would refuse spans for good.
                self._telemetry.add("agentledger_export_failures_total", label=("exporter", self.name))
                logger.error("exporter %s: spool error (will retry): %s", self.name, error)
                if not self._backoff.wait(self._stop):
                    return
                continue
            if not (exported or replayed):
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
        runs = _same_schema_runs(records)
        try:
            if len(runs) <= 1:
                self._deliver(concat_records(records), f"{self.name}:{start}-{end}", in_flight_end=end)
            else:
                # Records of another schema (written by another version) cannot be one table: each run of
                # records sharing a schema is exported on its own, under its own positions' id.
                for run in runs:
                    self._deliver(concat_records(run), f"{self.name}:{run[0].start}-{run[-1].end}", in_flight_end=end)
        except _Skipped:
            return True  # the batch in flight was the oldest backlog: skipped, not delivered
        finally:
            # The batch and what exporting it built are garbage now; Arrow's pool would keep their pages.
            release_arrow_memory()
        self._cursor.commit(end)
        self._spool.release()
        return True

    def _deliver(self, batch: SpanBatch, batch_id: str, in_flight_end: Position | None) -> int:
        """Delivers the batch, or all of it but the spans the destination refuses for good, which are in the
        dead-letter store when this returns. Sub-batch ids derive from the batch id and row ranges, so a
        replay after a crash mid-split repeats the same inserts under the same tokens (exactly once).
        Returns how many spans were dead-lettered. Raises _Stopped when the worker stops, _Skipped when the
        batch was skipped as overflow."""
        refused: list[tuple[SpanBatch, str, PermanentExportError]] = []
        split_budget = self._retry.max_split_exports
        parts = [(batch, batch_id)]
        while parts:
            part, part_id = parts.pop()
            if part.num_rows == 0:
                continue
            error = self._export_with_retries(part, part_id, in_flight_end)
            if error is None:
                continue
            if part_id == batch_id:
                logger.warning("exporter %s refused batch %s (%d spans) for good (%s): isolating the spans at fault",
                               self.name, batch_id, batch.num_rows, error.reason)  # fmt: skip
            if error.stored_rows is not None:
                part, part_id = _without_rows(part, error.stored_rows), f"{part_id}/unstored"
            if part.num_rows <= 1 or split_budget < 2:
                refused.append((part, part_id, error))
                continue
            split_budget -= 2
            half = part.num_rows // 2
            # Popped in order: first half first, so spans keep their order at the destination.
            parts.append((part.slice(half), f"{part_id}/{half}+{part.num_rows - half}"))
            parts.append((part.slice(0, half), f"{part_id}/0+{half}"))
        if not refused:
            return 0
        by_reason: dict[str, list[tuple[SpanBatch, str, PermanentExportError]]] = {}
        for item in refused:
            by_reason.setdefault(item[2].reason, []).append(item)
        for reason, items in sorted(by_reason.items()):
            spans = pa.concat_tables([item[0] for item in items])
            first_error = items[0][2]
            entry = self._put_dead_letter(spans, batch_id, reason, str(first_error))
            self._telemetry.add(
                "agentledger_spans_dead_lettered_total", spans.num_rows, ("exporter", self.name, "reason", reason)
            )
            logger.error(
                "exporter %s refused %d span(s) for good (%s): %s; kept in dead-letter entry %s"
                " (`agentledger deadletter show %s`, replay with `agentledger deadletter replay %s`)",
                self.name, spans.num_rows, reason, first_error, entry.id, entry.id, entry.id,
            )  # fmt: skip
        return sum(item[0].num_rows for item in refused)

    def _put_dead_letter(self, spans: SpanBatch, batch_id: str, reason: str, error: str) -> DeadLetterEntry:
        """Retries a failed write (disk full) with back-off: the cursor must not pass spans kept nowhere."""
        while True:
            try:
                return self.dead_letters.put(spans, batch_id, reason, error)
            except OSError as write_error:
                logger.error("exporter %s cannot write a dead-letter entry in %s (will retry): %s",
                             self.name, self.dead_letters.folder, write_error)  # fmt: skip
                if not self._backoff.wait(self._stop):
                    raise _Stopped from write_error

    def _export_with_retries(
        self, part: SpanBatch, part_id: str, in_flight_end: Position | None
    ) -> PermanentExportError | None:
        """None once delivered; the permanent error (or the retryable one past the retry cap) otherwise."""
        attempts = 0
        first_failure = time.monotonic()
        while True:
            began = time.perf_counter()
            try:
                self.exporter.export(part, part_id)
            except ExportError as error:
                failure = error
            except Exception as error:  # a bug in an exporter (or its converter) must not kill the worker
                # Most likely set off by something in this batch: isolated like a refusal, not retried.
                failure = PermanentExportError(f"{type(error).__name__}: {error}", "exporter_error")
            else:
                self._telemetry.observe(
                    "agentledger_export_seconds", time.perf_counter() - began, ("exporter", self.name)
                )
                self._telemetry.add("agentledger_spans_exported_total", part.num_rows, ("exporter", self.name))
                self._backoff.reset()
                return None
            self._telemetry.add("agentledger_export_failures_total", label=("exporter", self.name))
            attempts += 1
            if isinstance(failure, PermanentExportError):
                if failure.stored_rows is not None:
                    self._telemetry.add(
                        "agentledger_spans_exported_total", len(failure.stored_rows), ("exporter", self.name)
                    )
                # Once per sub-batch: debug only; the dead-letter entry is logged once, as an error.
                logger.debug("exporter %s refused batch %s (%d spans) for good: %s", self.name, part_id,
                             part.num_rows, failure)  # fmt: skip
                return failure
            if not failure.destination_down and self._past_retry_cap(attempts, first_failure):
                return PermanentExportError(
                    f"still failing after {attempts} attempts in {time.monotonic() - first_failure:.0f} s: {failure}",
                    "retries_exhausted",
                )
            logger.warning("exporter %s failed (will retry): %s", self.name, failure)
            if not self._backoff.wait(self._stop):
                raise _Stopped  # the plan stays and is replayed at the next start
            if in_flight_end is not None and self._skip_overflow(in_flight_end):
                raise _Skipped

    def _past_retry_cap(self, attempts: int, first_failure: float) -> bool:
        retry = self._retry
        if retry.max_attempts is not None and attempts >= retry.max_attempts:
            return True
        return retry.max_elapsed_s is not None and time.monotonic() - first_failure >= retry.max_elapsed_s

    def _replay_marked(self) -> bool:
        """Exports the dead-letter entries marked for replay (`agentledger deadletter replay`); what is refused
        again goes to a new entry before the old one is removed. Returns whether any entry was replayed."""
        now = time.monotonic()
        if now < self._next_replay_poll:
            return False
        self._next_replay_poll = now + REPLAY_POLL_SECONDS
        replayed = False
        for entry in self.dead_letters.marked_for_replay():
            try:
                spans = self.dead_letters.read(entry)
            except DeadLetterError as error:
                logger.error("exporter %s: %s; its replay mark stays", self.name, error)
                continue
            self._replay(entry, spans)
            replayed = True
        return replayed

    def _replay(self, entry: DeadLetterEntry, spans: SpanBatch) -> None:
        # The token derives from the entry, so a crash mid-replay replays it again exactly once.
        try:
            refused = self._deliver(spans, f"{self.name}:deadletter:{entry.id}", in_flight_end=None)
        except _Skipped:  # pragma: no cover - no overflow check without a batch in flight
            return
        # Counted before the entry goes, so whoever sees it gone (`deadletter list`, a test) also sees the count.
        self._telemetry.add("agentledger_spans_replayed_total", spans.num_rows - refused, ("exporter", self.name))
        self.dead_letters.remove(entry)
        logger.info("exporter %s: replayed dead-letter entry %s: %d spans delivered, %d refused again",
                    self.name, entry.id, spans.num_rows - refused, refused)  # fmt: skip

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


class _Skipped(Exception):
    """The batch in flight was the oldest backlog and was skipped (overflow skip_oldest)."""


def _without_rows(batch: SpanBatch, rows: pa.Array) -> SpanBatch:
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[rows.to_numpy(zero_copy_only=False)] = False
    return batch.filter(pa.array(keep))


def _same_schema_runs(records: list[SpoolRecord]) -> list[list[SpoolRecord]]:
    """Consecutive records grouped by schema (records without columns, skipped damage, join any run)."""
    runs: list[list[SpoolRecord]] = []
    schema: pa.Schema | None = None
    for record in records:
        if record.batch.num_columns and (schema is None or not record.batch.schema.equals(schema)):
            if schema is not None or not runs:
                runs.append([])
            schema = record.batch.schema
        elif not runs:
            runs.append([])
        runs[-1].append(record)
    return runs
