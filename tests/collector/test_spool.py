"""The durable spool on real files: round trips, recovery after crashes, corruption, limits, cursors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from agentledger.collector.config import SpoolConfig
from agentledger.collector.spool import Position, Spool, SpoolFull, concat_records


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


def test_a_corrupt_segment_is_quarantined_not_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, SpoolConfig())
    spool.append(_batch(1))
    spool.append(_batch(2))
    spool.close()
    segment = _segments(tmp_path)[0]
    data = bytearray(segment.read_bytes())
    data[20] ^= 0xFF  # flip a byte inside the first record's payload
    segment.write_bytes(bytes(data))

    recovered = Spool(tmp_path, SpoolConfig())

    assert recovered.quarantined_segments == 1
    assert [p.name.split(".")[0] for p in (tmp_path / "quarantine").iterdir()] == [segment.stem]
    assert "quarantined" in caplog.text
    recovered.append(_batch(3))
    assert _numbers(recovered, Position(1, 0)) == [3]


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
