"""Drains the spool into one exporter on its own thread, with retries, so exporters never wait on each other."""

from __future__ import annotations

import logging
import threading
import time

from agentledger.collector.component import Exporter, ExportError
from agentledger.collector.config import RetryConfig
from agentledger.collector.retry import Backoff
from agentledger.collector.spool import ExportCursor, Position, Spool, concat_records
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
    ) -> None:
        self.name = name
        self.exporter = exporter
        self._spool = spool
        self._cursor: ExportCursor = spool.cursor(name)
        self._telemetry = telemetry
        self._backoff = Backoff(retry)
        self._batch_max_spans = batch_max_spans
        self._stop = threading.Event()
        self._draining = False
        self._thread = threading.Thread(target=self._run, name=f"export-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def lag(self) -> Position:
        return self._cursor.committed

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._export_next():
                if self._draining:
                    return
                self._spool.wait_for_data(self._cursor.committed, timeout=0.5)

    def _export_next(self) -> bool:
        """Exports the planned or the next batch; returns False when there was nothing to export."""
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
                continue
            self._telemetry.observe("agentledger_export_seconds", time.perf_counter() - began, ("exporter", self.name))
            self._telemetry.add("agentledger_spans_exported_total", batch.num_rows, ("exporter", self.name))
            self._backoff.reset()
            break
        self._cursor.commit(end)
        self._spool.release()
        return True

    def stop(self, drain_seconds: float) -> None:
        """Exports what the spool holds for up to drain_seconds, then stops; the rest waits for the next start."""
        self._draining = True
        self._thread.join(timeout=drain_seconds)
        self._stop.set()
        self._thread.join()
