"""The durable spool on real files: round trips, recovery after crashes, corruption, limits, cursors."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import grpc
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.testclient import TestClient

from agentledger.collector import spool as spool_module
from agentledger.collector.config import GrpcProtocolConfig, HttpProtocolConfig, RetryConfig, SpoolConfig
from agentledger.collector.export_worker import ExportWorker
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_grpc import start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.spool import (
    Position,
    Spool,
    SpoolError,
    SpoolFull,
    concat_records,
    encode_batch,
    encode_record,
)
from agentledger.collector.telemetry import CollectorTelemetry
from tests.conftest import build_spool, free_port, numbered_batch, otlp_ingest, otlp_request_body, spool_numbers

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _batch(*values: int) -> pa.Table:
    return pa.table({"n": pa.array(values, pa.int64())})


def _numbers(spool: Spool, start: Position) -> list[int]:
    return concat_records(spool.read(start, 10**9)).column("n").to_pylist()


def _segments(directory: Path) -> list[Path]:
    return sorted((directory / "segments").glob("*.seg"))


def test_appended_batches_read_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig(segment_bytes=64 * 1024))
    for start in range(0, 30000, 1000):
        spool.append(_batch(*range(start, start + 1000)))

    assert _numbers(spool, Position(1, 0)) == list(range(30000))
    assert len(_segments(tmp_path)) > 1


def test_records_survive_a_restart_and_new_appends_go_after_them(tmp_path: Path) -> None:
    first = Spool(tmp_path, SpoolConfig())
    first.append(_batch(1, 2))
    first.close()

    second = Spool(tmp_path, SpoolConfig())
    second.append(_batch(3))

    assert _numbers(second, Position(1, 0)) == [1, 2, 3]


def test_a_torn_record_at_the_end_is_cut_and_earlier_records_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig())
    spool.append(_batch(1))
    spool.append(_batch(2))
    spool.close()
    segment = _segments(tmp_path)[0]
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # a crash in the middle of writing the second record

    recovered = Spool(tmp_path, SpoolConfig())

    assert _numbers(recovered, Position(1, 0)) == [1]
    assert recovered.quarantined_segments == 0


def test_append_refuses_past_max_bytes_of_unexported_data(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig(max_bytes=1024 * 1024))
    spool.cursor("clickhouse")
    big = _batch(*range(20_000))  # ~160 KB
    appended = 0
    with pytest.raises(SpoolFull):
        for _ in range(100):
            spool.append(big)
            appended += 1

    assert 4 <= appended <= 7
    cursor = spool.cursor("clickhouse")
    cursor.commit(spool.end())  # the exporter caught up
    spool.release()
    spool.append(big)  # room again


def test_segments_are_deleted_once_every_exporter_committed_past_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig(segment_bytes=64 * 1024))
    fast, slow = spool.cursor("fast"), spool.cursor("slow")
    for start in range(0, 30000, 1000):
        spool.append(_batch(*range(start, start + 1000)))
    fast.commit(spool.end())
    spool.release()
    before = len(_segments(tmp_path))

    slow.commit(spool.end())
    spool.release()

    assert before > 1
    assert len(_segments(tmp_path)) == 1  # only the active segment is left


def test_a_planned_batch_is_replayed_exactly_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig())
    for value in range(5):
        spool.append(_batch(value))
    records = spool.read(Position(1, 0), max_spans=3)
    cursor = spool.cursor("clickhouse")
    cursor.plan(records[0].start, records[-1].end)
    spool.close()

    reopened = Spool(tmp_path, SpoolConfig())
    replayed = reopened.cursor("clickhouse")

    assert replayed.planned == (records[0].start, records[-1].end)
    assert replayed.committed == Position(1, 0)
    assert [r.end for r in records] == [r.end for r in reopened.read(Position(1, 0), 3)]


# --- damage: only the damaged record is lost, and it is set aside and counted ------------------------------

NINE = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]  # three segments of three one-number records


def _flip(path: Path, offset: int) -> bytes:
    """Flips one byte; returns the file's bytes afterwards."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def _quarantine(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((directory / "quarantine").iterdir())}


def _counts(spool: Spool, telemetry: CollectorTelemetry) -> tuple[int, int, float, float]:
    """(damaged records, torn tails) as the spool counts them and as /metrics shows them."""
    damaged = telemetry.value("agentledger_spool_quarantined_records_total")
    torn = telemetry.value("agentledger_spool_torn_tail_records_total")
    return spool.quarantined_records, spool.torn_tails, damaged, torn


# Byte offsets inside a v2 record: sync marker 0-7, version 8-9, flags 10-11, length 12-15,
# payload crc 16-19, header crc 20-23, payload from 24.
@pytest.mark.parametrize(
    ("where", "number", "byte"),
    [
        ("sync marker", 5, 0),
        ("version", 5, 8),
        ("length field", 5, 13),
        ("payload checksum", 5, 17),
        ("header checksum", 5, 21),
        ("payload byte", 5, 100),
        ("first record of a segment", 4, 100),
        ("middle record of the first segment", 2, 13),
        ("last record of an older segment", 6, 100),
        ("last record of the first segment, its length", 3, 13),
        ("first record of the newest segment", 7, 13),
        ("middle record of the newest segment", 8, 100),
        ("last record of the newest segment, whole but failing its checksum", 9, 100),
        ("last record of the newest segment, its header checksum", 9, 21),
    ],
)
def test_a_damaged_record_alone_is_lost_quarantined_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, number: int, byte: int
) -> None:
    layout = {record.number: record for record in build_spool(tmp_path, NINE)}
    damaged = layout[number]
    data = _flip(damaged.segment, damaged.start + byte)
    telemetry = CollectorTelemetry()

    recovered = Spool(tmp_path, SpoolConfig(), telemetry)

    assert spool_numbers(recovered) == [n for n in range(1, 10) if n != number], where
    name = f"{damaged.segment.stem}.{damaged.start:012d}.damaged"
    assert _quarantine(tmp_path) == {name: data[damaged.start : damaged.end]}
    assert _counts(recovered, telemetry) == (1, 0, 1, 0)
    assert telemetry.value("agentledger_spool_quarantined_bytes_total") == (damaged.end - damaged.start)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"{damaged.segment.name} byte {damaged.start}:" in errors[0]
    # Reading again, or restarting, neither loses more nor counts the same damage twice.
    assert spool_numbers(recovered) == [n for n in range(1, 10) if n != number]
    recovered.close()
    again = Spool(tmp_path, SpoolConfig(), CollectorTelemetry())
    assert spool_numbers(again) == [n for n in range(1, 10) if n != number]
    assert (again.quarantined_records, again.torn_tails) == (0, 0)


def test_a_torn_tail_of_the_newest_segment_is_cut_copied_and_counted_apart(tmp_path: Path) -> None:
    layout = build_spool(tmp_path, NINE)
    newest = layout[-1]
    original = newest.segment.read_bytes()
    newest.segment.write_bytes(original[: newest.end - 7])  # a crash in the middle of writing record 9
    telemetry = CollectorTelemetry()

    recovered = Spool(tmp_path, SpoolConfig(), telemetry)

    assert spool_numbers(recovered) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert newest.segment.stat().st_size == newest.start  # cut: the next reader finds no damage
    name = f"{newest.segment.stem}.{newest.start:012d}.torn_tail"
    assert _quarantine(tmp_path) == {name: original[newest.start : newest.end - 7]}
    assert _counts(recovered, telemetry) == (0, 1, 0, 1)
    recovered.append(numbered_batch(10))
    assert spool_numbers(recovered) == [1, 2, 3, 4, 5, 6, 7, 8, 10]


def test_a_zero_filled_tail_of_the_newest_segment_is_torn(tmp_path: Path) -> None:
    """After a crash some file systems keep the new file size but not the data: zeros."""
    layout = build_spool(tmp_path, NINE)
    newest = layout[-1]
    data = newest.segment.read_bytes()
    newest.segment.write_bytes(data[: newest.start] + bytes(newest.end - newest.start))
    telemetry = CollectorTelemetry()

    recovered = Spool(tmp_path, SpoolConfig(), telemetry)

    assert spool_numbers(recovered) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert _counts(recovered, telemetry) == (0, 1, 0, 1)
    assert newest.segment.stat().st_size == newest.start


def test_a_truncated_last_record_of_an_older_segment_is_damage_not_a_torn_tail(tmp_path: Path) -> None:
    layout = {record.number: record for record in build_spool(tmp_path, NINE)}
    older = layout[6]
    original = older.segment.read_bytes()
    older.segment.write_bytes(original[: older.end - 7])
    telemetry = CollectorTelemetry()

    recovered = Spool(tmp_path, SpoolConfig(), telemetry)

    assert spool_numbers(recovered) == [1, 2, 3, 4, 5, 7, 8, 9]
    assert _quarantine(tmp_path) == {f"{older.segment.stem}.{older.start:012d}.damaged": original[older.start : -7]}
    assert _counts(recovered, telemetry) == (1, 0, 1, 0)


def test_two_adjacent_damaged_records_and_inserted_garbage_lose_only_themselves(tmp_path: Path) -> None:
    layout = {record.number: record for record in build_spool(tmp_path, NINE)}
    _flip(layout[4].segment, layout[4].start + 13)  # length field: the scan must find record 5's marker
    _flip(layout[5].segment, layout[5].start + 100)  # payload
    first = layout[1].segment
    data = first.read_bytes()
    garbage = b"\x00garbage" * 10
    first.write_bytes(data[: layout[2].start] + garbage + data[layout[2].start :])
    telemetry = CollectorTelemetry()

    recovered = Spool(tmp_path, SpoolConfig(), telemetry)

    assert spool_numbers(recovered) == [1, 2, 3, 6, 7, 8, 9]
    assert sorted(_quarantine(tmp_path)) == [
        f"{first.stem}.{layout[2].start:012d}.damaged",
        f"{layout[4].segment.stem}.{layout[4].start:012d}.damaged",
        f"{layout[5].segment.stem}.{layout[5].start:012d}.damaged",
    ]
    assert _quarantine(tmp_path)[f"{first.stem}.{layout[2].start:012d}.damaged"] == garbage
    assert _counts(recovered, telemetry) == (3, 0, 3, 0)


def test_damage_found_while_exporting_skips_the_record_not_the_segment(tmp_path: Path) -> None:
    telemetry = CollectorTelemetry()
    spool = Spool(tmp_path, SpoolConfig(), telemetry)
    ends = [spool.append(numbered_batch(number)) for number in range(1, 6)]
    segment = sorted((tmp_path / "segments").glob("*.seg"))[-1]
    _flip(segment, ends[1].offset + 100)  # record 3, after the spool checked the segment at start

    first = spool.read(Position(1, 0), 2)
    rest = spool.read(first[-1].end, 10**9)

    assert [r.batch.column("n").to_pylist() if r.batch.num_columns else None for r in first + rest] == [
        [1], [2], None, [4], [5],
    ]  # fmt: skip
    assert [r.end for r in first + rest] == ends  # positions stay contiguous: a cursor moves past the damage
    assert _counts(spool, telemetry) == (1, 0, 1, 0)
    assert list(_quarantine(tmp_path)) == [f"{segment.stem}.{ends[1].offset:012d}.damaged"]
    spool.read(Position(1, 0), 10**9)
    assert _counts(spool, telemetry) == (1, 0, 1, 0)  # counted once


def test_a_sender_cannot_smuggle_a_record_through_a_damaged_one(tmp_path: Path) -> None:
    """Span content may hold bytes that look like a whole record; resynchronising after damage in the
    record around them must not read them as one."""
    forged = encode_record(encode_batch(numbered_batch(666)))
    spool = Spool(tmp_path, SpoolConfig())
    spool.append(numbered_batch(1))
    middle_start = spool.end()
    spool.append(pa.table({"n": pa.array([2], pa.int64()), "content": pa.array([forged * 3], pa.binary())}))
    spool.append(numbered_batch(3))
    spool.close()
    segment = sorted((tmp_path / "segments").glob("*.seg"))[0]
    _flip(segment, middle_start.offset + 30)  # the payload's start, before the forged bytes

    recovered = Spool(tmp_path, SpoolConfig())

    assert spool_numbers(recovered) == [1, 3]


def test_a_spool_left_by_the_previous_version_still_drains(tmp_path: Path) -> None:
    layout = {record.number: record for record in build_spool(tmp_path, [[1, 2, 3], [4, 5, 6]], v1=True)}
    _flip(layout[2].segment, layout[2].start + 30)  # v1 damage also loses only its record
    telemetry = CollectorTelemetry()

    spool = Spool(tmp_path, SpoolConfig(), telemetry)
    spool.append(numbered_batch(7))

    assert spool_numbers(spool) == [1, 3, 4, 5, 6, 7]
    assert _counts(spool, telemetry) == (1, 0, 1, 0)
    cursor = spool.cursor("clickhouse")
    cursor.commit(spool.end())
    spool.release()
    assert [p.name for p in sorted((tmp_path / "segments").glob("*.seg"))] == ["000000000003.seg"]


def test_a_cursor_of_the_previous_version_is_read_and_replaced(tmp_path: Path) -> None:
    build_spool(tmp_path, [[1, 2, 3]])
    (tmp_path / "cursors" / "clickhouse.json").write_text('{"committed": [1, 0], "planned": [[1, 0], [1, 40]]}')

    cursor = Spool(tmp_path, SpoolConfig()).cursor("clickhouse")
    assert (cursor.committed, cursor.planned) == (Position(1, 0), (Position(1, 0), Position(1, 40)))
    cursor.commit(Position(1, 40))

    assert [p.name for p in (tmp_path / "cursors").iterdir()] == ["clickhouse.cursor"]
    assert Spool(tmp_path, SpoolConfig()).cursor("clickhouse").committed == Position(1, 40)


def test_a_torn_cursor_write_falls_back_to_the_previous_state(tmp_path: Path) -> None:
    spool = Spool(tmp_path, SpoolConfig())
    cursor = spool.cursor("clickhouse")
    cursor.commit(Position(1, 10))
    cursor.commit(Position(1, 20))  # saves 1, 2, 3...: slots 1, 0, 1...
    path = tmp_path / "cursors" / "clickhouse.cursor"
    _flip(path, 30)  # the newest state's slot torn

    assert Spool(tmp_path, SpoolConfig()).cursor("clickhouse").committed == Position(1, 10)


# --- the write path: nothing is acknowledged that is not wholly on disk -----------------------------------


class _Disk:
    """os.write / os.fsync as a failing disk does them: short writes, then ENOSPC, or a failed fsync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
        self.real_write, self.real_fsync = os.write, os.fsync
        self.room: int | None = None  # bytes the disk still takes; None: unlimited
        self.max_chunk: int | None = None  # most bytes one write call takes
        self.fsync_error: int | None = None
        self.spool_files = str(directory)
        self.pwrite_errors = 0  # how many cursor saves fail with EIO
        self.real_pwrite = os.pwrite
        monkeypatch.setattr(spool_module.os, "write", self.write)
        monkeypatch.setattr(spool_module.os, "fsync", self.fsync)
        monkeypatch.setattr(spool_module.os, "pwrite", self.pwrite)

    def _ours(self, file_descriptor: int) -> bool:
        """Only the spool's files fail: event loops and pipes share os.write."""
        return os.readlink(f"/proc/self/fd/{file_descriptor}").startswith(self.spool_files)

    def write(self, file_descriptor: int, data: bytes | memoryview) -> int:
        if not self._ours(file_descriptor):
            return self.real_write(file_descriptor, data)
        data = bytes(data)
        if self.max_chunk is not None:
            data = data[: self.max_chunk]
        if self.room is not None:
            if self.room == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            data = data[: self.room]
            self.room -= len(data)
        return self.real_write(file_descriptor, data)

    def pwrite(self, file_descriptor: int, data: bytes | memoryview, offset: int) -> int:
        if self.pwrite_errors and self._ours(file_descriptor):
            self.pwrite_errors -= 1
            raise OSError(errno.EIO, "Input/output error")
        return self.real_pwrite(file_descriptor, data, offset)

    def fsync(self, file_descriptor: int) -> None:
        if self.fsync_error is not None and self._ours(file_descriptor):
            error, self.fsync_error = self.fsync_error, None
            raise OSError(error, os.strerror(error))
        self.real_fsync(file_descriptor)


def test_a_short_write_then_enospc_is_refused_rolled_back_and_the_next_append_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = CollectorTelemetry()
    spool = Spool(tmp_path, SpoolConfig(), telemetry)
    disk = _Disk(monkeypatch, tmp_path)
    acknowledged = spool.append(numbered_batch(1))
    disk.room = 50  # the disk takes 50 bytes of the next record, then is full

    with pytest.raises(SpoolError, match="No space left on device"):
        spool.append(numbered_batch(2))

    segment = sorted((tmp_path / "segments").glob("*.seg"))[-1]
    assert segment.stat().st_size == acknowledged.offset  # no partial record left behind
    assert spool.end() == acknowledged
    assert telemetry.value("agentledger_spool_write_errors_total", ("error", "ENOSPC")) == 1
    disk.room = None  # space again: no restart needed
    spool.append(numbered_batch(3))
    assert spool_numbers(spool) == [1, 3]
    spool.close()
    recovered = Spool(tmp_path, SpoolConfig())
    assert spool_numbers(recovered) == [1, 3]
    assert (recovered.quarantined_records, recovered.torn_tails) == (0, 0)


def test_short_writes_are_continued_until_the_record_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, SpoolConfig())
    _Disk(monkeypatch, tmp_path).max_chunk = 17

    for number in range(1, 4):
        spool.append(numbered_batch(number))
    spool.close()

    assert spool_numbers(Spool(tmp_path, SpoolConfig())) == [1, 2, 3]


@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC])
def test_a_failed_fsync_acknowledges_nothing_and_the_next_append_goes_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    telemetry = CollectorTelemetry()
    spool = Spool(tmp_path, SpoolConfig(fsync="always"), telemetry)
    disk = _Disk(monkeypatch, tmp_path)
    acknowledged = spool.append(numbered_batch(1))
    disk.fsync_error = error

    with pytest.raises(SpoolError, match="cannot fsync"):
        spool.append(numbered_batch(2))

    assert spool.end() == acknowledged  # readers never see the refused record
    assert spool_numbers(spool) == [1]
    after = spool.append(numbered_batch(3))
    assert after.segment == acknowledged.segment + 1  # never trust the file whose fsync failed again
    assert spool_numbers(spool) == [1, 3]
    assert telemetry.value("agentledger_spool_write_errors_total", ("error", errno.errorcode[error])) == 1
    spool.close()
    assert spool_numbers(Spool(tmp_path, SpoolConfig())) == [1, 3]


def test_concurrent_appenders_of_a_failed_group_commit_are_all_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: records written while one fsync runs wait for the next; if it fails, every record it
    would have covered is refused, none is readable, and the spool keeps working."""
    spool = Spool(tmp_path, SpoolConfig())
    disk = _Disk(monkeypatch, tmp_path)
    entered, release = threading.Event(), threading.Event()
    real_fsync = disk.fsync
    calls = {"n": 0}

    def slow_failing_fsync(file_descriptor: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the first group's fsync waits until others wrote, then fails
            entered.set()
            release.wait(10)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(file_descriptor)

    monkeypatch.setattr(spool_module.os, "fsync", slow_failing_fsync)
    outcomes: dict[int, str] = {}

    def append(number: int) -> None:
        try:
            spool.append(numbered_batch(number))
            outcomes[number] = "acknowledged"
        except SpoolError:
            outcomes[number] = "refused"

    first = threading.Thread(target=append, args=(1,))
    first.start()
    entered.wait(10)
    others = [threading.Thread(target=append, args=(n,)) for n in (2, 3)]
    for thread in others:
        thread.start()
    record_bytes = len(encode_record(encode_batch(numbered_batch(1))))
    while spool.bytes_after(Position(1, 0)) < 3 * record_bytes:  # both others wrote, and wait for the fsync
        threading.Event().wait(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join()

    assert outcomes == {1: "refused", 2: "refused", 3: "refused"}
    assert spool_numbers(spool) == []
    spool.append(numbered_batch(4))
    assert spool_numbers(spool) == [4]


def test_a_full_disk_answers_503_with_retry_after_over_http_and_unavailable_over_grpc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = CollectorTelemetry()
    spool = Spool(tmp_path, SpoolConfig(), telemetry)
    ingest = otlp_ingest(Pipeline([], [], spool), telemetry)
    http = TestClient(create_otlp_http_app(HttpProtocolConfig(), ingest))
    grpc_endpoint = f"127.0.0.1:{free_port()}"
    server = start_grpc_server(GrpcProtocolConfig(endpoint=grpc_endpoint), ingest)
    disk = _Disk(monkeypatch, tmp_path)
    disk.room = 0
    try:
        response = http.post("/v1/traces", content=otlp_request_body("run_full", 3), headers=PROTOBUF)
        with grpc.insecure_channel(grpc_endpoint) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            request = ExportTraceServiceRequest.FromString(otlp_request_body("run_full_grpc", 2))
            with pytest.raises(grpc.RpcError) as refused:
                stub.Export(request, timeout=10)
    finally:
        server.stop(0).wait()

    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "No space left on device" in str(refused.value.details())
    assert telemetry.value("agentledger_spans_refused_total", ("reason", "PipelineUnavailable")) == 5
    assert telemetry.value("agentledger_spans_accepted_total") == 0
    assert spool.end() == Position(1, 0)
    disk.room = None
    assert http.post("/v1/traces", content=otlp_request_body("run_later", 3), headers=PROTOBUF).status_code == 200


class _Recording:
    def __init__(self) -> None:
        self.numbers: list[int] = []

    def export(self, batch: pa.Table, batch_id: str) -> None:
        self.numbers += batch.column("n").to_pylist()

    def shutdown(self) -> None:
        pass


def test_an_export_worker_outlives_cursor_saves_the_disk_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = CollectorTelemetry()
    spool = Spool(tmp_path, SpoolConfig(), telemetry)
    recording = _Recording()
    worker = ExportWorker("archive", recording, spool, telemetry, RetryConfig(initial_interval_s=0.01), 1)
    worker._cursor.commit(Position(1, 0))  # the cursor file exists: later saves write in place
    disk = _Disk(monkeypatch, tmp_path)
    disk.pwrite_errors = 3
    for number in range(1, 4):
        spool.append(numbered_batch(number))

    worker.start()
    for _ in range(3000):  # bounded: a dead worker fails the assertions below instead of hanging
        if spool.cursor("archive").committed == spool.end():
            break
        threading.Event().wait(0.01)
    worker.stop(0)

    assert disk.pwrite_errors == 0
    assert recording.numbers[-1] == 3 and sorted(set(recording.numbers)) == [1, 2, 3]
    assert telemetry.value("agentledger_export_failures_total", ("exporter", "archive")) == 3
    spool.close()
    assert Spool(tmp_path, SpoolConfig()).cursor("archive").committed == spool.end()


def test_a_flip_of_any_byte_of_a_record_loses_that_record_only(tmp_path: Path) -> None:
    """Byte positions of a middle record, one at a time: all of the header (marker, version, length, both
    checksums), and payload bytes throughout."""
    pristine = tmp_path / "pristine"
    layout = {record.number: record for record in build_spool(pristine, NINE)}
    damaged = layout[5]
    lost: dict[int, list[int]] = {}
    size = damaged.end - damaged.start
    for byte in sorted({*range(32), *range(32, size, 5), *range(size - 16, size)}):  # every header byte
        copy = tmp_path / f"flip-{byte}"
        shutil.copytree(pristine, copy)
        segment = copy / "segments" / damaged.segment.name
        _flip(segment, damaged.start + byte)
        recovered = Spool(copy, SpoolConfig())
        missing = sorted(set(range(1, 10)) - set(spool_numbers(recovered)))
        if missing != [5] or recovered.quarantined_records != 1:
            lost[byte] = missing
        recovered.close()
        shutil.rmtree(copy)

    assert lost == {}


def test_a_crash_at_any_byte_of_the_last_append_keeps_every_earlier_record(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    newest = build_spool(pristine, NINE)[-1]
    wrong: dict[int, tuple[list[int], int, int]] = {}
    size = newest.end - newest.start
    for kept in sorted({*range(32), *range(32, size, 5), *range(size - 16, size)}):
        copy = tmp_path / f"cut-{kept}"
        shutil.copytree(pristine, copy)
        segment = copy / "segments" / newest.segment.name
        segment.write_bytes(segment.read_bytes()[: newest.start + kept])
        recovered = Spool(copy, SpoolConfig())
        numbers = spool_numbers(recovered)
        if numbers != list(range(1, 9)) or (recovered.quarantined_records, recovered.torn_tails) != (0, int(kept > 0)):
            wrong[kept] = (numbers, recovered.quarantined_records, recovered.torn_tails)
        recovered.close()
        shutil.rmtree(copy)

    assert wrong == {}


def test_under_fsync_interval_a_failed_fsync_refuses_its_request_and_keeps_what_was_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, SpoolConfig(fsync="interval", fsync_interval_ms=600_000))
    disk = _Disk(monkeypatch, tmp_path)
    spool.append(numbered_batch(1))  # the first append runs an fsync, the next one is within the window
    spool.append(numbered_batch(2))
    spool._last_sync_time -= 601  # the window has passed (no sleeping in tests): the next append runs the fsync
    disk.fsync_error = errno.EIO

    with pytest.raises(SpoolError, match="cannot fsync"):
        spool.append(numbered_batch(3))

    assert spool_numbers(spool) == [1, 2]
    assert spool.append(numbered_batch(4)).segment == 2
    assert spool_numbers(spool) == [1, 2, 4]
