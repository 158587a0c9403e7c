"""The durable spool: an append-only log of span batches on disk, between the processors and the exporters.

A batch is acknowledged once its record is in a segment file (and fsynced, per policy). Each exporter
drains the log at its own pace from its own cursor, so a slow or dead exporter never stalls the others,
and after a crash (kill -9 included) every exporter resumes from its last committed position.

Layout: segments/<id>.seg hold records `MAGIC | u32 length | u32 crc32 | Arrow IPC stream`;
cursors/<consumer>.json hold the committed position and the planned next batch (see ExportCursor);
quarantine/ receives segments found corrupt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from agentledger.collector.config import SpoolConfig

logger = logging.getLogger(__name__)

MAGIC = b"ALS1"
_HEADER = struct.Struct("<4sII")


class SpoolFull(RuntimeError):
    """The spool holds its configured maximum of unexported bytes; senders must retry later."""


class RecordTooLarge(SpoolFull):
    """The batch is bigger than the whole spool may hold: it can never fit, however much is exported."""


class SpoolError(RuntimeError):
    """The spool could not write a record (disk full, I/O error); nothing was acknowledged."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int

    def __str__(self) -> str:
        return f"{self.segment}:{self.offset}"


@dataclass(frozen=True)
class SpoolRecord:
    start: Position
    end: Position
    batch: pa.Table


def encode_batch(batch: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_batch(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


class _Segment:
    def __init__(self, segment_id: int, path: Path, size: int, created: float) -> None:
        self.id = segment_id
        self.path = path
        self.size = size
        self.created = created


class Spool:
    """Thread-safe: receivers append concurrently, exporter workers read concurrently."""

    def __init__(self, directory: Path, config: SpoolConfig) -> None:
        self.config = config
        self.directory = directory
        self._segments_dir = directory / "segments"
        self._cursors_dir = directory / "cursors"
        self._quarantine_dir = directory / "quarantine"
        for folder in (self._segments_dir, self._cursors_dir, self._quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        self._active_file: int | None = None
        self._synced: Position = Position(0, 0)
        self._last_sync_time = 0.0
        self._consumers: dict[str, ExportCursor] = {}
        self.quarantined_segments = 0
        self._recover()

    # --- recovery -----------------------------------------------------------------------------------

    def _recover(self) -> None:
        for path in sorted(self._segments_dir.glob("*.seg")):
            try:
                segment_id = int(path.stem)
            except ValueError:
                self._quarantine(path, "its name is not a segment number")
                continue
            size = self._valid_length(path)
            if size is None:
                continue
            self._segments.append(_Segment(segment_id, path, size, path.stat().st_mtime))
        next_id = self._segments[-1].id + 1 if self._segments else 1
        self._open_new_segment(next_id)

    def _valid_length(self, path: Path) -> int | None:
        """Length of the segment's intact records. A torn record at the very end (a crash mid-append,
        never acknowledged) is cut off; damage before the end quarantines the whole segment."""
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            if len(data) - offset < _HEADER.size:
                break
            magic, length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if magic != MAGIC or end > len(data):
                if magic == MAGIC and end > len(data):
                    break  # torn tail
                self._quarantine(path, f"bad record header at byte {offset}")
                return None
            if zlib.crc32(data[offset + _HEADER.size : end]) != crc:
                if end == len(data):
                    break  # torn tail whose payload was only partly written
                self._quarantine(path, f"checksum mismatch at byte {offset}")
                return None
            offset = end
        if offset != len(data):
            logger.warning("spool segment %s: cut a torn, unacknowledged record at byte %d", path.name, offset)
            with path.open("r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())
        return offset

    def _quarantine(self, path: Path, reason: str) -> None:
        target = self._quarantine_dir / f"{path.name}.{int(time.time())}"
        path.rename(target)
        self.quarantined_segments += 1
        logger.error("spool segment %s quarantined to %s: %s", path.name, target, reason)

    def _open_new_segment(self, segment_id: int) -> None:
        if self._active_file is not None:
            os.fsync(self._active_file)
            os.close(self._active_file)
        path = self._segments_dir / f"{segment_id:012d}.seg"
        self._active_file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active = _Segment(segment_id, path, 0, time.time())
        self._segments.append(self._active)
        _fsync_directory(self._segments_dir)

    # --- writing ------------------------------------------------------------------------------------

    def append(self, batch: pa.Table) -> Position:
        """Writes the batch as one record; returns its end position once it is as durable as configured."""
        payload = encode_batch(batch)
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        if len(record) > self.config.max_bytes:
            raise RecordTooLarge(
                f"the request's spans take {len(record)} bytes encoded, more than the whole spool holds"
                f" (spool.max_bytes {self.config.max_bytes}); send fewer spans per request"
            )
        with self._lock:
            if self.unexported_bytes() + len(record) > self.config.max_bytes:
                raise SpoolFull(
                    f"the spool holds {self.unexported_bytes()} unexported bytes (limit {self.config.max_bytes})"
                )
            assert self._active is not None and self._active_file is not None
            if self._active.size > 0 and self._active.size + len(record) > self.config.segment_bytes:
                self._open_new_segment(self._active.id + 1)
                assert self._active is not None and self._active_file is not None
            try:
                os.write(self._active_file, record)
            except OSError as error:
                raise SpoolError(f"cannot write to the spool: {error.strerror}") from error
            self._active.size += len(record)
            end = Position(self._active.id, self._active.size)
            file_descriptor = self._active_file
            self._appended.notify_all()
        self._make_durable(end, file_descriptor)
        return end

    def _make_durable(self, end: Position, file_descriptor: int) -> None:
        policy = self.config.fsync
        if policy == "never":
            return
        if policy == "interval" and time.monotonic() - self._last_sync_time < self.config.fsync_interval_ms / 1000:
            return
        # Group commit: one fsync covers every record appended before it, so concurrent appenders
        # that find their record already synced return without a second fsync.
        with self._sync_lock:
            if self._synced >= end:
                return
            with self._lock:
                target = Position(self._active.id, self._active.size) if self._active else end
            # OSError: the segment rotated (and was synced and closed) since we wrote: already durable.
            with contextlib.suppress(OSError):
                os.fsync(file_descriptor)
            self._synced = max(self._synced, target)
            self._last_sync_time = time.monotonic()

    # --- reading ------------------------------------------------------------------------------------

    def end(self) -> Position:
        with self._lock:
            assert self._active is not None
            return Position(self._active.id, self._active.size)

    def read(self, start: Position, max_spans: int) -> list[SpoolRecord]:
        """Records from `start` on, up to about max_spans spans (at least one record if any)."""
        with self._lock:
            segments = [(s.id, s.path, s.size) for s in self._segments if s.id >= start.segment]
        records: list[SpoolRecord] = []
        spans = 0
        for segment_id, path, size in segments:
            offset = start.offset if segment_id == start.segment else 0
            if offset >= size:
                continue
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    while offset < size and (not records or spans < max_spans):
                        header = handle.read(_HEADER.size)
                        magic, length, crc = _HEADER.unpack(header)
                        payload = handle.read(length)
                        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                            raise _CorruptRecord(offset)
                        batch = decode_batch(payload)
                        next_offset = offset + _HEADER.size + length
                        records.append(
                            SpoolRecord(Position(segment_id, offset), Position(segment_id, next_offset), batch)
                        )
                        spans += batch.num_rows
                        offset = next_offset
            except (_CorruptRecord, struct.error, pa.ArrowInvalid, OSError) as error:
                self._quarantine_live(segment_id, f"unreadable record at byte {offset}: {error}")
                if records:
                    return records
                # Skip to the next segment: what follows the damage cannot be read.
                return [SpoolRecord(start, Position(segment_id + 1, 0), pa.table({}))]
            if records and spans >= max_spans:
                break
        return records

    def _quarantine_live(self, segment_id: int, reason: str) -> None:
        with self._lock:
            for segment in self._segments:
                if segment.id == segment_id and segment is not self._active:
                    self._segments.remove(segment)
                    self._quarantine(segment.path, reason)
                    return
        logger.error("spool segment %d: %s (left in place: it is being written)", segment_id, reason)

    def wait_for_data(self, after: Position, timeout: float) -> None:
        with self._appended:
            assert self._active is not None
            if Position(self._active.id, self._active.size) > after:
                return
            self._appended.wait(timeout)

    # --- consumers and space ------------------------------------------------------------------------

    def cursor(self, consumer: str) -> ExportCursor:
        with self._lock:
            if consumer not in self._consumers:
                first = self._segments[0].id if self._segments else 1
                self._consumers[consumer] = ExportCursor(self._cursors_dir / f"{consumer}.json", Position(first, 0))
            return self._consumers[consumer]

    def release(self) -> None:
        """Deletes segments every consumer has committed past."""
        with self._lock:
            if not self._consumers:
                return
            oldest_needed = min(cursor.committed.segment for cursor in self._consumers.values())
            for segment in list(self._segments):
                if segment.id < oldest_needed and segment is not self._active:
                    self._segments.remove(segment)
                    segment.path.unlink(missing_ok=True)

    def pending_bytes(self) -> float:
        with self._lock:
            return float(self.unexported_bytes())

    def unexported_bytes(self) -> int:
        """Bytes some consumer has not committed yet (call with the lock held)."""
        if not self._consumers:
            return sum(segment.size for segment in self._segments)
        oldest = min(cursor.committed for cursor in self._consumers.values())
        total = 0
        for segment in self._segments:
            if segment.id > oldest.segment:
                total += segment.size
            elif segment.id == oldest.segment:
                total += max(0, segment.size - oldest.offset)
        return total

    def bytes_after(self, position: Position) -> int:
        """Bytes in the spool from `position` to its end: one consumer's backlog."""
        with self._lock:
            total = 0
            for segment in self._segments:
                if segment.id > position.segment:
                    total += segment.size
                elif segment.id == position.segment:
                    total += max(0, segment.size - position.offset)
            return total

    def oldest_unexported_age(self) -> float:
        """Seconds since the oldest segment still holding unexported records was created (0 when none)."""
        with self._lock:
            if not self._consumers:
                return 0.0
            oldest = min(cursor.committed for cursor in self._consumers.values())
            for segment in self._segments:
                if segment.id >= oldest.segment and (segment.id > oldest.segment or segment.size > oldest.offset):
                    return max(0.0, time.time() - segment.created)
            return 0.0

    def total_bytes(self) -> float:
        with self._lock:
            return float(sum(segment.size for segment in self._segments))

    def close(self) -> None:
        with self._lock:
            if self._active_file is not None:
                os.fsync(self._active_file)
                os.close(self._active_file)
                self._active_file = None


class _CorruptRecord(Exception):
    pass


class ExportCursor:
    """One consumer's progress: the committed position, and the planned batch [start, end) if one is
    in flight. The plan is saved before exporting so a replay after a crash exports exactly the same
    records under the same batch id, which lets ClickHouse deduplicate the retried insert."""

    def __init__(self, path: Path, default: Position) -> None:
        self._path = path
        self.committed = default
        self.planned: tuple[Position, Position] | None = None
        if path.exists():
            state = json.loads(path.read_text())
            self.committed = Position(*state["committed"])
            if state.get("planned"):
                start, end = state["planned"]
                self.planned = (Position(*start), Position(*end))

    def plan(self, start: Position, end: Position) -> None:
        self.planned = (start, end)
        self._save()

    def commit(self, end: Position) -> None:
        self.committed = end
        self.planned = None
        self._save()

    def _save(self) -> None:
        state = {
            "committed": [self.committed.segment, self.committed.offset],
            "planned": [[p.segment, p.offset] for p in self.planned] if self.planned else None,
        }
        temporary = self._path.with_suffix(".tmp")
        with temporary.open("w") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self._path)


def concat_records(records: Iterable[SpoolRecord]) -> pa.Table:
    tables = [record.batch for record in records if record.batch.num_columns]
    return pa.concat_tables(tables) if tables else pa.table({})


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
