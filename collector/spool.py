"""The durable spool: an append-only log of span batches on disk, between the processors and the exporters.

A batch is acknowledged once its record is wholly in a segment file (and fsynced, per policy). Each exporter
drains the log at its own pace from its own cursor, so a slow or dead exporter never stalls the others,
and after a crash (kill -9 included) every exporter resumes from its last committed position.

Layout: segments/<id>.seg hold records (format v2, see SYNC_MAGIC; segments written by format v1,
`b"ALS1" | u32 length | u32 crc32 | payload`, are still read); the payload is an Arrow IPC stream.
cursors/<consumer>.cursor hold the committed position and the planned next batch (see ExportCursor);
quarantine/ receives a copy of every damaged record (`<segment>.<offset>.damaged`), of every torn,
never-acknowledged tail (`<segment>.<offset>.torn_tail`) and files that are not segments at all.
"""

from __future__ import annotations

import errno
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
from typing import BinaryIO, Literal

import pyarrow as pa

from agentledger.collector.config import SpoolConfig
from agentledger.collector.telemetry import CollectorTelemetry

logger = logging.getLogger(__name__)

# Format v2 record: SYNC_MAGIC | u16 version | u16 flags | u32 payload length | u32 payload crc32 |
# u32 crc32 of the 20 bytes before it | payload. The header checksum makes a length field trustworthy, and
# the marker lets a reader find the next record after damage, so one damaged record loses only itself.
SYNC_MAGIC = b"\xc3ALSync\x9e"
FORMAT_VERSION = 2
_V2_FIELDS = struct.Struct("<8sHHII")
_V2_HEADER_SIZE = _V2_FIELDS.size + 4
# Format v1 (before sync markers): MAGIC | u32 payload length | u32 payload crc32 | payload.
MAGIC = b"ALS1"
_V1_HEADER = struct.Struct("<4sII")
_HEADER = _V1_HEADER  # its name before format v2

QuarantineKind = Literal["damaged", "torn_tail"]


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
    """A record read back; a damaged record (set aside in quarantine) reads as an empty, column-less batch
    so that positions stay contiguous and a cursor can move past it."""

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


def encode_record(payload: bytes) -> bytes:
    """One format-v2 record holding `payload`."""
    fields = _V2_FIELDS.pack(SYNC_MAGIC, FORMAT_VERSION, 0, len(payload), zlib.crc32(payload))
    return fields + struct.pack("<I", zlib.crc32(fields)) + payload


def encode_v1_record(payload: bytes) -> bytes:
    """One record of the previous format (kept to test that a spool left by an upgrade still drains)."""
    return _V1_HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


class _RecordFormat:
    """How to recognise a record and find the next one after damage, for one segment format."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.header_size = _V2_HEADER_SIZE if version == 2 else _V1_HEADER.size
        self.marker = SYNC_MAGIC if version == 2 else MAGIC

    def payload_length(self, header: bytes) -> int | None:
        """The payload length a header declares, or None when the header fails its own checks."""
        if len(header) < self.header_size:
            return None
        if self.version == 1:
            magic, length, _ = _V1_HEADER.unpack_from(header)
            return int(length) if magic == MAGIC else None
        magic, version, _, length, _ = _V2_FIELDS.unpack_from(header)
        (header_crc,) = struct.unpack_from("<I", header, _V2_FIELDS.size)
        if magic != SYNC_MAGIC or version != FORMAT_VERSION or zlib.crc32(header[: _V2_FIELDS.size]) != header_crc:
            return None
        return int(length)

    def payload_valid(self, header: bytes, payload: bytes) -> bool:
        crc = _V1_HEADER.unpack_from(header)[2] if self.version == 1 else _V2_FIELDS.unpack_from(header)[4]
        return zlib.crc32(payload) == int(crc)

    def record_end(self, data: bytes | memoryview, offset: int) -> int | None:
        """End of the whole, valid record at `offset` in `data`, or None."""
        header = bytes(data[offset : offset + self.header_size])
        length = self.payload_length(header)
        if length is None:
            return None
        end = offset + self.header_size + length
        if end > len(data) or not self.payload_valid(header, bytes(data[offset + self.header_size : end])):
            return None
        return end

    def resume_point(self, data: bytes, offset: int) -> int:
        """Where reading resumes after the damaged record at `offset`: the next record start, or len(data)."""
        if self.version == 2:
            # A header that passes its checksum gives a trustworthy length: the damage is inside this record.
            # Trying its end first also keeps a scan out of the damaged payload, where span content chosen by
            # a sender could imitate a record.
            length = self.payload_length(data[offset : offset + self.header_size])
            if length is not None:
                candidate = offset + self.header_size + length
                if candidate >= len(data):
                    return len(data)  # the file ends inside this record: all of it is this record's
                if self._starts_record(data, candidate):
                    return candidate
        position = data.find(self.marker, offset + 1)
        while position != -1:
            if self._starts_record(data, position):
                return position
            position = data.find(self.marker, position + 1)
        return len(data)

    def is_torn(self, tail: bytes) -> bool:
        """Whether a bad record that runs to the end of the file is what a crash mid-append leaves: the file
        ends inside its header or its declared payload, or in bytes allocated but never written (zeros).
        A complete record failing its checksum is damage, wherever it is."""
        if len(tail) < self.header_size or not tail.strip(b"\0"):
            return True
        length = self.payload_length(tail[: self.header_size])
        return length is not None and self.header_size + length > len(tail)

    def _starts_record(self, data: bytes, offset: int) -> bool:
        if self.version == 2:  # the header's own checksum is enough; its payload is checked when read
            return self.payload_length(data[offset : offset + self.header_size]) is not None
        return self.record_end(data, offset) is not None  # v1 headers have no checksum: need the payload's


_V1 = _RecordFormat(1)
_V2 = _RecordFormat(2)


def _format_of(data: bytes) -> _RecordFormat:
    if data.startswith(MAGIC) or (not data.startswith(SYNC_MAGIC) and SYNC_MAGIC not in data and MAGIC in data):
        return _V1
    return _V2


@dataclass(frozen=True)
class _Extent:
    start: int
    end: int
    valid: bool


def _scan(data: bytes, record_format: _RecordFormat) -> list[_Extent]:
    """Splits a segment's bytes into valid records and damaged stretches (each up to the next record)."""
    extents: list[_Extent] = []
    offset = 0
    while offset < len(data):
        end = record_format.record_end(data, offset)
        if end is not None:
            extents.append(_Extent(offset, end, True))
        else:
            end = record_format.resume_point(data, offset)
            extents.append(_Extent(offset, end, False))
        offset = end
    return extents


class _Segment:
    def __init__(self, segment_id: int, path: Path, size: int, created: float, record_format: _RecordFormat) -> None:
        self.id = segment_id
        self.path = path
        # Bytes in the file: where the next record goes.
        self.size = size
        # Bytes acknowledged (wholly written and, per the fsync policy, synced): what readers see.
        self.durable = size
        self.created = created
        self.format = record_format
        # No more appends: rotated, or a failed write or fsync left its tail untrustworthy.
        self.sealed = False


class Spool:
    """Thread-safe: receivers append concurrently, exporter workers read concurrently.

    Lock order: `_sync_lock` (one fsync or segment rotation at a time) before `_lock` (the state).
    """

    def __init__(self, directory: Path, config: SpoolConfig, telemetry: CollectorTelemetry | None = None) -> None:
        self.config = config
        self.directory = directory
        self._telemetry = telemetry
        self._segments_dir = directory / "segments"
        self._cursors_dir = directory / "cursors"
        self._quarantine_dir = directory / "quarantine"
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        self._active_file: int | None = None
        self._last_sync_time = 0.0
        self._consumers: dict[str, ExportCursor] = {}
        self._quarantine_lock = threading.Lock()  # exporters reading the same damage count it once
        self._quarantined: set[tuple[int, int]] = set()
        # Whole files set aside (not segments); damaged records are counted by kind below.
        self.quarantined_segments = 0
        # Damaged records (their spans are lost) and torn tails (never acknowledged), each copied to quarantine.
        self.quarantined_records = 0
        self.quarantined_bytes = 0
        self.torn_tails = 0
        self.torn_tail_bytes = 0
        try:
            for folder in (self._segments_dir, self._cursors_dir, self._quarantine_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self._recover()
        except OSError as error:
            raise SpoolError(f"cannot open the spool in {directory}: {error.strerror or error}") from error

    # --- recovery -----------------------------------------------------------------------------------

    def _recover(self) -> None:
        paths: list[tuple[int, Path]] = []
        for path in sorted(self._segments_dir.glob("*.seg")):
            try:
                paths.append((int(path.stem), path))
            except ValueError:
                self._quarantine_file(path, "its name is not a segment number")
        paths.sort()
        for index, (segment_id, path) in enumerate(paths):
            newest = index == len(paths) - 1
            record_format, size = self._check_segment(segment_id, path, newest)
            segment = _Segment(segment_id, path, size, path.stat().st_mtime, record_format)
            segment.sealed = True
            self._segments.append(segment)
        next_id = self._segments[-1].id + 1 if self._segments else 1
        # Appends always go to a fresh segment: an old tail is never written after, whatever state it is in.
        with self._sync_lock, self._lock:
            self._open_new_segment(next_id)

    def _check_segment(self, segment_id: int, path: Path, newest: bool) -> tuple[_RecordFormat, int]:
        """Quarantines copies of the segment's damaged records (they stay in place and are skipped when
        read); returns its format and length. Only in the newest segment may a bad final record be the torn
        write of a crash, never acknowledged (see is_torn): it is cut, after a copy to quarantine."""
        data = path.read_bytes()
        record_format = _format_of(data)
        extents = _scan(data, record_format)
        torn = bool(newest and extents and not extents[-1].valid and record_format.is_torn(data[extents[-1].start :]))
        for index, extent in enumerate(extents):
            if not extent.valid:
                kind: QuarantineKind = "torn_tail" if torn and index == len(extents) - 1 else "damaged"
                self._quarantine_extent(segment_id, path, extent.start, data[extent.start : extent.end], kind)
        if torn:
            cut = extents[-1].start
            with path.open("r+b") as handle:
                handle.truncate(cut)
                os.fsync(handle.fileno())
            return record_format, cut
        return record_format, len(data)

    def _quarantine_extent(self, segment_id: int, path: Path, offset: int, data: bytes, kind: QuarantineKind) -> None:
        """Copies the bytes to quarantine, counts them and logs one line, once per record (across restarts
        too: the copy's name is its segment and offset)."""
        target = self._quarantine_dir / f"{path.stem}.{offset:012d}.{kind}"
        with self._quarantine_lock:
            if (segment_id, offset) in self._quarantined:
                return
            self._quarantined.add((segment_id, offset))
            if target.exists() and target.stat().st_size == len(data):
                return  # set aside and counted by an earlier run
            copied = f"copied to {target}"
            try:
                with target.open("wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                copied = f"could not copy it to quarantine: {error.strerror}"
            if kind == "torn_tail":
                self.torn_tails += 1
                self.torn_tail_bytes += len(data)
            else:
                self.quarantined_records += 1
                self.quarantined_bytes += len(data)
        if self._telemetry is not None:
            prefix = "agentledger_spool_torn_tail" if kind == "torn_tail" else "agentledger_spool_quarantined"
            self._telemetry.add(f"{prefix}_records_total", 1)
            self._telemetry.add(f"{prefix}_bytes_total", len(data))
        if kind == "torn_tail":
            logger.warning(
                "spool segment %s byte %d: cut a torn, never acknowledged record (%d bytes); %s",
                path.name, offset, len(data), copied,
            )  # fmt: skip
        else:
            logger.error(
                "spool segment %s byte %d: damaged record (%d bytes) skipped, its spans are lost; %s",
                path.name, offset, len(data), copied,
            )  # fmt: skip

    def _quarantine_file(self, path: Path, reason: str) -> None:
        target = self._quarantine_dir / f"{path.name}.{int(time.time())}"
        path.rename(target)
        self.quarantined_segments += 1
        logger.error("spool file %s quarantined to %s: %s", path.name, target, reason)

    # --- writing ------------------------------------------------------------------------------------

    def append(self, batch: pa.Table) -> Position:
        """Writes the batch as one record; returns its end position once it is as durable as configured.

        Raises RecordTooLarge when the record is bigger than the whole spool (it can never fit), SpoolFull
        at the configured limit, SpoolError when the disk refuses the write or the fsync:
        then nothing of the record stays readable, and the next append starts clean."""
        record = encode_record(encode_batch(batch))
        if len(record) > self.config.max_bytes:
            raise RecordTooLarge(
                f"the request's spans take {len(record)} bytes encoded, more than the whole spool holds"
                f" (spool.max_bytes {self.config.max_bytes}); send fewer spans per request"
            )
        while True:
            with self._lock:
                self._check_room(len(record))
                if not self._needs_new_segment(len(record)):
                    segment, end = self._write(record)
                    if not self._sync_due():
                        segment.durable = segment.size
                        self._appended.notify_all()
                        return end
                    break
            self._rotate(len(record))
        self._sync(segment, end)
        return end

    def _check_room(self, record_bytes: int) -> None:
        if self.unexported_bytes() + record_bytes > self.config.max_bytes:
            raise SpoolFull(
                f"the spool holds {self.unexported_bytes()} unexported bytes (limit {self.config.max_bytes})"
            )

    def _needs_new_segment(self, record_bytes: int) -> bool:
        assert self._active is not None
        active = self._active
        return active.sealed or (active.size > 0 and active.size + record_bytes > self.config.segment_bytes)

    def _sync_due(self) -> bool:
        policy = self.config.fsync
        if policy == "never":
            return False
        if policy == "interval":
            return time.monotonic() - self._last_sync_time >= self.config.fsync_interval_ms / 1000
        return True

    def _write(self, record: bytes) -> tuple[_Segment, Position]:
        """Appends the whole record to the active segment (call with the lock held), or none of it."""
        assert self._active is not None and self._active_file is not None
        segment, file_descriptor = self._active, self._active_file
        start = segment.size
        try:
            view = memoryview(record)
            written = 0
            while written < len(record):  # os.write may take less than asked (a nearly full disk)
                taken = os.write(file_descriptor, view[written:])
                if taken == 0:
                    raise OSError(errno.ENOSPC, "the disk took none of the record")
                written += taken
        except OSError as error:
            self._count_write_error(error)
            try:
                os.ftruncate(file_descriptor, start)  # no partial record may stay behind an acknowledged one
            except OSError as truncate_error:
                segment.sealed = True  # its tail holds a partial record: later records go to a new segment
                logger.error("spool segment %s: cannot cut a partial record: %s", segment.path.name, truncate_error)
            raise SpoolError(f"cannot write to the spool: {error.strerror or error}") from error
        segment.size = start + len(record)
        return segment, Position(segment.id, segment.size)

    def _sync(self, segment: _Segment, end: Position) -> None:
        # Group commit: one fsync covers every record written before it, so concurrent appenders
        # that find their record already durable return without a second fsync.
        with self._sync_lock:
            with self._lock:
                if segment.durable >= end.offset:
                    return
                if segment.sealed or segment is not self._active or self._active_file is None:
                    raise SpoolError("the spool could not make the record durable (an fsync failed); retry")
                target, file_descriptor = segment.size, self._active_file
            try:
                os.fsync(file_descriptor)
            except OSError as error:
                with self._lock:
                    self._fsync_failed(segment, file_descriptor, error)
                raise SpoolError(f"cannot fsync the spool: {error.strerror or error}") from error
            with self._lock:
                segment.durable = max(segment.durable, target)
                self._last_sync_time = time.monotonic()
                self._appended.notify_all()

    def _fsync_failed(self, segment: _Segment, file_descriptor: int, error: OSError) -> None:
        """After a failed fsync the kernel may have dropped the dirty pages and marks them clean, so a
        second fsync could succeed without the data being on disk: the records it covered are refused and
        cut, and the segment is sealed so that the next append writes to a new file."""
        self._count_write_error(error)
        segment.sealed = True
        if segment.size > segment.durable:
            try:
                os.ftruncate(file_descriptor, segment.durable)
                segment.size = segment.durable
            except OSError as truncate_error:
                logger.error("spool segment %s: cannot cut unsynced records: %s", segment.path.name, truncate_error)
        logger.error(
            "spool segment %s: fsync failed (%s); unacknowledged records from byte %d refused, segment sealed",
            segment.path.name, error.strerror or error, segment.durable,
        )  # fmt: skip

    def _count_write_error(self, error: OSError) -> None:
        if self._telemetry is not None:
            name = errno.errorcode.get(error.errno, "unknown") if error.errno is not None else "unknown"
            self._telemetry.add("agentledger_spool_write_errors_total", 1, ("error", name))

    def _rotate(self, record_bytes: int) -> None:
        with self._sync_lock, self._lock:  # no fsync in flight on the file being closed
            if self._needs_new_segment(record_bytes):
                assert self._active is not None
                self._open_new_segment(self._active.id + 1)

    def _open_new_segment(self, segment_id: int) -> None:
        """Makes a new, empty segment the active one, sealing the previous (call with both locks held)."""
        path = self._segments_dir / f"{segment_id:012d}.seg"
        try:
            file_descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            self._count_write_error(error)
            raise SpoolError(f"cannot create a spool segment: {error.strerror or error}") from error
        try:
            fsync_directory(self._segments_dir)
        except OSError as error:
            os.close(file_descriptor)
            path.unlink(missing_ok=True)
            self._count_write_error(error)
            raise SpoolError(f"cannot create a spool segment: {error.strerror or error}") from error
        previous, previous_file = self._active, self._active_file
        if previous is not None and previous_file is not None:
            if not previous.sealed:  # also under fsync `interval`: the window's records get their fsync
                try:
                    os.fsync(previous_file)
                    previous.durable = previous.size
                except OSError as error:
                    self._fsync_failed(previous, previous_file, error)
            previous.sealed = True
            os.close(previous_file)
        self._active_file = file_descriptor
        self._active = _Segment(segment_id, path, 0, time.time(), _V2)
        self._segments.append(self._active)
        self._appended.notify_all()

    # --- reading ------------------------------------------------------------------------------------

    def end(self) -> Position:
        """Just past the last acknowledged record."""
        with self._lock:
            assert self._active is not None
            return Position(self._active.id, self._active.durable)

    def read(self, start: Position, max_spans: int) -> list[SpoolRecord]:
        """Acknowledged records from `start` on, up to about max_spans spans (at least one record if any).

        A damaged record is copied to quarantine, counted, and read as an empty record: reading goes on
        with the next good record."""
        with self._lock:
            segments = [(s.id, s.path, s.durable, s.format) for s in self._segments if s.id >= start.segment]
        records: list[SpoolRecord] = []
        spans = 0
        for segment_id, path, size, record_format in segments:
            offset = start.offset if segment_id == start.segment else 0
            if offset >= size:
                continue
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue  # released meanwhile: every consumer is past it
            with handle:
                while offset < size and (not records or spans < max_spans):
                    try:
                        record, next_offset = self._read_record(handle, segment_id, path, offset, size, record_format)
                    except OSError as error:  # EIO: the disk, not the record; the reader retries later
                        raise SpoolError(f"cannot read spool segment {path.name}: {error.strerror or error}") from error
                    records.append(record)
                    spans += record.batch.num_rows
                    offset = next_offset
            if records and spans >= max_spans:
                break
        return records

    def _read_record(
        self, handle: BinaryIO, segment_id: int, path: Path, offset: int, size: int, record_format: _RecordFormat
    ) -> tuple[SpoolRecord, int]:
        handle.seek(offset)
        header = handle.read(record_format.header_size)
        length = record_format.payload_length(header)
        if length is not None and offset + record_format.header_size + length <= size:
            payload = handle.read(length)
            if len(payload) == length and record_format.payload_valid(header, payload):
                try:
                    batch = decode_batch(payload)
                except (pa.ArrowInvalid, OSError):
                    pass  # checksummed yet undecodable: as damaged as any other
                else:
                    end = offset + record_format.header_size + length
                    return SpoolRecord(Position(segment_id, offset), Position(segment_id, end), batch), end
        # Damaged: the rest of the segment is read once to find where the next record starts.
        handle.seek(offset)
        rest = handle.read(size - offset)
        end = offset + record_format.resume_point(rest, 0)
        self._quarantine_extent(segment_id, path, offset, rest[: end - offset], "damaged")
        return SpoolRecord(Position(segment_id, offset), Position(segment_id, end), pa.table({})), end

    def wait_for_data(self, after: Position, timeout: float) -> None:
        with self._appended:
            assert self._active is not None
            if Position(self._active.id, self._active.durable) > after:
                return
            self._appended.wait(timeout)

    # --- consumers and space ------------------------------------------------------------------------

    def cursor(self, consumer: str) -> ExportCursor:
        with self._lock:
            if consumer not in self._consumers:
                first = self._segments[0].id if self._segments else 1
                self._consumers[consumer] = ExportCursor(self._cursors_dir, consumer, Position(first, 0))
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
        with self._sync_lock, self._lock:
            for cursor in self._consumers.values():
                cursor.close()
            if self._active_file is not None:
                try:
                    os.fsync(self._active_file)
                except OSError as error:
                    logger.error("spool: fsync at close failed: %s", error)
                os.close(self._active_file)
                self._active_file = None


_CURSOR_MAGIC = b"ALC2"
_CURSOR_SLOT_HEADER = struct.Struct("<4sQHI")  # magic, sequence, body length, crc32 of the body
_CURSOR_SLOT_BYTES = 256


class ExportCursor:
    """One consumer's progress: the committed position, and the planned batch [start, end) if one is
    in flight. The plan is saved before exporting so a replay after a crash exports exactly the same
    records under the same batch id, which lets ClickHouse deduplicate the retried insert.

    The file has two checksummed slots written alternately in place: saving needs no new disk space, so
    an exporter can still commit (and let the spool release segments) while the disk is full, and a torn
    write leaves the other slot intact. Cursors of the previous version (`<consumer>.json`) are read."""

    def __init__(self, directory: Path, consumer: str, default: Position) -> None:
        self._path = directory / f"{consumer}.cursor"
        self._legacy_path = directory / f"{consumer}.json"
        self.committed = default
        self.planned: tuple[Position, Position] | None = None
        self._sequence = 0
        self._file: int | None = None
        if self._path.exists():
            self._load_slots(self._path.read_bytes())
        elif self._legacy_path.exists():
            self._apply(json.loads(self._legacy_path.read_text()))

    def _load_slots(self, data: bytes) -> None:
        best: tuple[int, dict[str, object]] | None = None
        for slot_start in (0, _CURSOR_SLOT_BYTES):
            slot = data[slot_start : slot_start + _CURSOR_SLOT_BYTES]
            if len(slot) < _CURSOR_SLOT_HEADER.size:
                continue
            magic, sequence, length, crc = _CURSOR_SLOT_HEADER.unpack_from(slot)
            body = slot[_CURSOR_SLOT_HEADER.size : _CURSOR_SLOT_HEADER.size + length]
            valid = magic == _CURSOR_MAGIC and len(body) == length and zlib.crc32(body) == crc
            if valid and (best is None or sequence > best[0]):
                best = (sequence, json.loads(body))
        if best is None:
            raise SpoolError(f"spool cursor {self._path} is unreadable: both of its slots are damaged")
        self._sequence = best[0]
        self._apply(best[1])
        self._file = os.open(self._path, os.O_WRONLY)

    def _apply(self, state: dict[str, object]) -> None:
        committed = state["committed"]
        assert isinstance(committed, list)
        self.committed = Position(*committed)
        planned = state.get("planned")
        if planned:
            assert isinstance(planned, list)
            start, end = planned
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
        body = json.dumps(state).encode()
        self._sequence += 1
        slot = _CURSOR_SLOT_HEADER.pack(_CURSOR_MAGIC, self._sequence, len(body), zlib.crc32(body)) + body
        slot = slot.ljust(_CURSOR_SLOT_BYTES, b"\0")
        assert len(slot) == _CURSOR_SLOT_BYTES, "a cursor state outgrew its slot"
        try:
            if self._file is None:
                self._create(slot)
            else:
                _write_fully_at(self._file, slot, (self._sequence % 2) * _CURSOR_SLOT_BYTES)
                os.fsync(self._file)
        except OSError as error:
            raise SpoolError(f"cannot save spool cursor {self._path.name}: {error.strerror or error}") from error

    def _create(self, slot: bytes) -> None:
        temporary = self._path.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            handle.write(slot + slot)  # real bytes, not a hole: later writes in place need no allocation
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self._path)
        fsync_directory(self._path.parent)
        self._legacy_path.unlink(missing_ok=True)
        self._file = os.open(self._path, os.O_WRONLY)

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None


def concat_records(records: Iterable[SpoolRecord]) -> pa.Table:
    tables = [record.batch for record in records if record.batch.num_columns]
    return pa.concat_tables(tables) if tables else pa.table({})


def _write_fully_at(file_descriptor: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        taken = os.pwrite(file_descriptor, view, offset)
        if taken == 0:
            raise OSError(errno.ENOSPC, "the disk took none of the cursor")
        view, offset = view[taken:], offset + taken


def fsync_directory(directory: Path) -> None:
    """Makes a file's creation, rename or removal in `directory` durable (the dead-letter store uses it too)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
