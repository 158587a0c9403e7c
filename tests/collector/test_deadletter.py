"""Bad data never stalls an exporter: spans ClickHouse refuses for good are isolated by splitting the batch and
kept in the dead-letter store with the reason, everything else is stored exactly once, other tenants' spans
flow meanwhile, a replay stores them once the cause is gone, and a batch over any number of days inserts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client

from agentledger.cli import main
from agentledger.collector.component import ExportError, PermanentExportError
from agentledger.collector.config import ClickHouseExporterConfig, RetryConfig, SpoolConfig
from agentledger.collector.config_file import CollectorConfig
from agentledger.collector.deadletter import DeadLetterStore, all_entries
from agentledger.collector.export_errors import classify_clickhouse, classify_http_status
from agentledger.collector.export_worker import ExportWorker
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline, build_pipeline
from agentledger.collector.spool import Spool
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.span_writer import SpanWriter
from tests.collector.span_batches import DAY_NS, EPOCH_2025_NS, FailingExporter, span_batch

DEAD = "agentledger_spans_dead_lettered_total"
EXPORTED = "agentledger_spans_exported_total"
FAST = RetryConfig(initial_interval_s=0.01, max_interval_s=0.05)
NO_POISON = "ALTER TABLE spans ADD CONSTRAINT no_poison CHECK name != 'poison'"


def _wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _stored(client: Client) -> tuple[int, int, int]:
    """(rows, distinct spans, the run index's span total): equal only if nothing was inserted twice."""
    rows = int(client.command("SELECT count() FROM spans"))
    distinct = int(client.command("SELECT uniqExact(trace_id, span_id) FROM spans"))
    index = int(client.command("SELECT sum(span_count) FROM runs"))
    return rows, distinct, index


def _names(client: Client, tenant: str) -> list[str]:
    result = client.query("SELECT name FROM spans WHERE tenant = {t:String} ORDER BY start_time", {"t": tenant})
    return [str(row[0]) for row in result.result_rows]


class _Running:
    def __init__(self, pipeline: Pipeline, telemetry: CollectorTelemetry, data_dir: Path) -> None:
        self.pipeline, self.telemetry, self.data_dir = pipeline, telemetry, data_dir
        assert pipeline.spool is not None
        self.spool: Spool = pipeline.spool

    def caught_up(self) -> bool:
        return self.spool.bytes_after(self.spool.cursor("clickhouse").committed) == 0


@pytest.fixture
def running(client: Client, tmp_path: Path) -> Iterator[Callable[[], _Running]]:
    """Starts the real pipeline (processors, spool, ClickHouse exporter) with its spool in <tmp>/data/spool,
    where `agentledger deadletter --data-dir <tmp>/data` looks; several starts share the spool."""
    started: list[Pipeline] = []

    def start() -> _Running:
        telemetry = CollectorTelemetry()
        config = CollectorConfig(
            exporters={"clickhouse": ClickHouseExporterConfig(retry=FAST)}, spool=SpoolConfig(fsync="never")
        )
        pipeline = build_pipeline(config, client, telemetry, tmp_path / "data" / "spool")
        pipeline.start()
        started.append(pipeline)
        return _Running(pipeline, telemetry, tmp_path / "data")

    yield start
    for pipeline in started:
        pipeline.shutdown(drain_seconds=0)


def test_a_batch_over_101_days_is_stored_once(client: Client, running: Callable[[], _Running]) -> None:
    # Reproduction: ClickHouse refused the insert (more than 100 partitions in one block) and the batch was
    # retried forever while the spool filled.
    service = running()
    days = [EPOCH_2025_NS + day * DAY_NS for day in range(101)]
    service.pipeline.consume(span_batch([f"day {day}" for day in range(101)], start_times_ns=days))
    _wait(service.caught_up)

    assert _stored(client) == (101, 101, 101)
    assert int(client.command("SELECT uniqExact(toDate(start_time)) FROM spans")) == 101
    assert service.telemetry.value(EXPORTED, ("exporter", "clickhouse")) == 101
    assert all_entries(service.spool.directory) == []


def test_a_back_fill_over_years_inserts_in_blocks_and_a_repeated_insert_is_dropped(client: Client) -> None:
    # 301 days, out of order (years apart): 7 insert blocks. Any number of days works the same way; more
    # only make the test slow (ClickHouse writes one part per day).
    days = [EPOCH_2025_NS + ((day * 37) % 301) * 11 * DAY_NS for day in range(301)]
    batch = span_batch([f"s{day}" for day in range(301)], start_times_ns=days)
    writer = SpanWriter(client)
    writer.insert(batch, deduplication_token="backfill:1")
    writer.insert(batch, deduplication_token="backfill:1")  # a replay of the same batch

    assert _stored(client) == (301, 301, 301)
    assert int(client.command("SELECT uniqExact(toDate(start_time)) FROM spans")) == 301


def test_poison_spans_are_dead_lettered_the_rest_stored_once_and_other_tenants_flow(
    client: Client, running: Callable[[], _Running]
) -> None:
    client.command(NO_POISON)
    service = running()
    names = [f"good {index}" for index in range(40)]
    names[7] = names[31] = "poison"
    service.pipeline.consume(span_batch(names, tenant="acme", run_id="run_acme"))
    service.pipeline.consume(span_batch([f"other {index}" for index in range(10)], tenant="globex", run_id="run_g"))
    _wait(service.caught_up)

    assert _stored(client) == (48, 48, 48)
    assert _names(client, "acme") == [name for name in names if name != "poison"]
    assert _names(client, "globex") == [f"other {index}" for index in range(10)]
    (entry,) = all_entries(service.spool.directory)
    assert (entry.exporter, entry.reason, entry.span_count, entry.tenants) == (
        "clickhouse", "VIOLATED_CONSTRAINT", 2, ("acme",),
    )  # fmt: skip
    assert "Constraint `no_poison`" in entry.error
    dead = DeadLetterStore(service.spool.directory, "clickhouse").read(entry)
    assert dead["name"].to_pylist() == ["poison", "poison"]
    assert service.telemetry.value(DEAD, ("exporter", "clickhouse", "reason", "VIOLATED_CONSTRAINT")) == 2
    assert service.telemetry.value(EXPORTED, ("exporter", "clickhouse")) == 48
    metrics = service.telemetry.render_prometheus()
    assert 'agentledger_spans_dead_lettered_total{exporter="clickhouse",reason="VIOLATED_CONSTRAINT"} 2' in metrics
    assert 'agentledger_deadletter_entries{exporter="clickhouse"} 1' in metrics


def test_poison_in_a_later_block_of_a_many_days_batch_leaves_the_stored_blocks_stored_once(
    client: Client, running: Callable[[], _Running]
) -> None:
    client.command(NO_POISON)
    service = running()
    days = [EPOCH_2025_NS + day * DAY_NS for day in range(120)]
    names = ["poison" if day == 80 else f"day {day}" for day in range(120)]
    service.pipeline.consume(span_batch(names, tenant="acme", run_id="run_acme", start_times_ns=days))
    _wait(service.caught_up)

    assert _stored(client) == (119, 119, 119)
    (entry,) = all_entries(service.spool.directory)
    assert (entry.reason, entry.span_count) == ("VIOLATED_CONSTRAINT", 1)
    assert service.telemetry.value(EXPORTED, ("exporter", "clickhouse")) == 119
    # The spans stored before the refused block are in the audit chain once, like the others.
    chained = int(client.command("SELECT sum(length(span_keys)) FROM audit_chain"))
    distinct = int(client.command("SELECT uniqExact(key) FROM audit_chain ARRAY JOIN span_keys AS key"))
    assert (chained, distinct) == (119, 119)


def test_replay_while_still_refused_keeps_them_then_after_the_fix_stores_them_once(
    client: Client, running: Callable[[], _Running], capsys: pytest.CaptureFixture[str]
) -> None:
    client.command(NO_POISON)
    service = running()
    service.pipeline.consume(span_batch(["a", "poison", "b", "poison", "c"], tenant="acme", run_id="run_acme"))
    _wait(service.caught_up)
    (entry,) = all_entries(service.spool.directory)
    data = ["--data-dir", str(service.data_dir)]
    capsys.readouterr()

    assert main(["deadletter", "list", *data]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith(f"{entry.id}\tclickhouse\t") and "\t2 spans\tVIOLATED_CONSTRAINT\ttenants acme" in listed
    assert main(["deadletter", "show", entry.id, *data]) == 0
    shown = capsys.readouterr().out
    assert "reason:    VIOLATED_CONSTRAINT" in shown and shown.count("  acme  ") == 2 and "poison" in shown
    assert main(["deadletter", "show", "0000000000000000", *data]) == 1
    assert "no dead-letter entry with id '0000000000000000'" in capsys.readouterr().err
    assert main(["deadletter", "replay", *data]) == 2
    assert "an entry id or --all" in capsys.readouterr().err

    # Replayed with the constraint still in place: refused again, kept (under a new entry), nothing duplicated.
    assert main(["deadletter", "replay", entry.id, *data]) == 0
    _wait(lambda: [e.id != entry.id for e in all_entries(service.spool.directory)] == [True])
    (again,) = all_entries(service.spool.directory)
    assert (again.reason, again.span_count, again.replay_requested) == ("VIOLATED_CONSTRAINT", 2, False)
    assert _stored(client) == (3, 3, 3)

    client.command("ALTER TABLE spans DROP CONSTRAINT no_poison")
    assert main(["deadletter", "replay", "--all", *data]) == 0
    assert "marked 1 entry for replay" in capsys.readouterr().out
    _wait(lambda: all_entries(service.spool.directory) == [])

    assert _stored(client) == (5, 5, 5)
    assert sorted(_names(client, "acme")) == ["a", "b", "c", "poison", "poison"]
    assert service.telemetry.value("agentledger_spans_replayed_total", ("exporter", "clickhouse")) == 2
    assert 'agentledger_deadletter_entries{exporter="clickhouse"} 0' in service.telemetry.render_prometheus()


def test_a_replay_of_an_entry_marked_while_up_was_stopped_happens_at_the_next_start(
    client: Client, running: Callable[[], _Running]
) -> None:
    client.command(NO_POISON)
    first = running()
    first.pipeline.consume(span_batch(["a", "poison"], tenant="acme", run_id="run_acme"))
    _wait(first.caught_up)
    first.pipeline.shutdown(drain_seconds=0)
    client.command("ALTER TABLE spans DROP CONSTRAINT no_poison")
    assert main(["deadletter", "replay", "--all", "--data-dir", str(first.data_dir)]) == 0

    second = running()
    _wait(lambda: all_entries(second.spool.directory) == [])
    assert _stored(client) == (2, 2, 2)


def test_a_crash_after_the_split_before_the_commit_replays_exactly_once(
    client: Client, running: Callable[[], _Running]
) -> None:
    client.command(NO_POISON)
    first = running()
    start = first.spool.cursor("clickhouse").committed
    names = ["poison" if index in (3, 60, 61) else f"good {index}" for index in range(100)]
    first.pipeline.consume(span_batch(names, tenant="acme", run_id="run_acme"))
    _wait(first.caught_up)
    end = first.spool.cursor("clickhouse").committed
    first.pipeline.shutdown(drain_seconds=0)
    (entry,) = all_entries(first.spool.directory)
    # As if killed after every sub-batch and the dead-letter entry were written but before the cursor commit.
    spool = Spool(first.spool.directory, SpoolConfig(fsync="never"))
    cursor = spool.cursor("clickhouse")
    cursor.committed = start
    cursor.plan(start, end)
    spool.close()

    second = running()
    _wait(second.caught_up)

    assert _stored(client) == (97, 97, 97)
    assert [(e.id, e.span_count) for e in all_entries(second.spool.directory)] == [(entry.id, 3)]
    assert second.telemetry.value(EXPORTED, ("exporter", "clickhouse")) == 97


def test_a_record_without_the_spans_schema_is_dead_lettered_and_its_neighbours_stored(
    client: Client, running: Callable[[], _Running]
) -> None:
    service = running()
    service.spool.append(span_batch(["before"], tenant="acme", run_id="run_acme"))
    service.spool.append(pa.table({"span_id": ["x", "y"]}))  # e.g. a record written by another version
    service.spool.append(span_batch(["after"], tenant="acme", run_id="run_acme"))
    _wait(service.caught_up)

    assert sorted(_names(client, "acme")) == ["after", "before"]
    (entry,) = all_entries(service.spool.directory)
    assert (entry.reason, entry.span_count, entry.tenants) == ("schema_mismatch", 2, ())


def test_retryable_errors_give_up_at_the_cap_but_a_destination_down_is_retried_without_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", SpoolConfig(fsync="never"))
    telemetry = CollectorTelemetry()
    flaky = FailingExporter(ExportError("HTTP 500 on this input", "http_500"))
    down = FailingExporter(ExportError("connection refused", "unreachable", destination_down=True))
    capped = RetryConfig(initial_interval_s=0.001, max_interval_s=0.002, max_attempts=3)
    workers = [
        ExportWorker("flaky", flaky, spool, telemetry, capped, 1000),
        ExportWorker("down", down, spool, telemetry, capped, 1000),
    ]
    spool.append(span_batch(["a", "b", "c", "d"]))
    for worker in workers:
        worker.start()
    _wait(lambda: spool.cursor("flaky").committed == spool.end() and down.attempts >= 10)
    for worker in workers:
        worker.stop(0)

    # 3 attempts at the batch, each half and each span; then the four spans are kept with the reason.
    assert flaky.attempts == 3 * 7
    (entry,) = all_entries(spool.directory)
    assert (entry.exporter, entry.reason, entry.span_count) == ("flaky", "retries_exhausted", 4)
    assert "still failing after 3 attempts" in entry.error and "HTTP 500 on this input" in entry.error
    assert telemetry.value(DEAD, ("exporter", "flaky", "reason", "retries_exhausted")) == 4
    assert spool.cursor("down").committed < spool.end()  # the outage keeps its backlog, on disk
    assert telemetry.value(DEAD, ("exporter", "down", "reason", "unreachable")) == 0
    spool.close()


def test_every_span_refused_costs_at_most_the_split_budget(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", SpoolConfig(fsync="never"))
    refusing = FailingExporter(PermanentExportError("schema of the destination changed", "NO_SUCH_COLUMN_IN_TABLE"))
    retry = RetryConfig(initial_interval_s=0.001, max_split_exports=8)
    worker = ExportWorker("refusing", refusing, spool, CollectorTelemetry(), retry, 10_000)
    spool.append(span_batch([f"s{index}" for index in range(1000)]))
    worker.start()
    _wait(lambda: spool.cursor("refusing").committed == spool.end())
    worker.stop(0)

    assert refusing.attempts == 1 + 8
    (entry,) = all_entries(spool.directory)
    assert (entry.reason, entry.span_count) == ("NO_SUCH_COLUMN_IN_TABLE", 1000)
    spool.close()


def _error(run: Callable[[], object]) -> BaseException:
    try:
        run()
    except Exception as error:  # the real exception clickhouse-connect raises
        return error
    raise AssertionError("no error")


def test_real_clickhouse_errors_are_classified_by_server_code(client: Client) -> None:
    batch = span_batch(["x"])
    client.command(NO_POISON)
    refused = _error(lambda: client.insert_arrow("spans", span_batch(["poison"])))
    days = span_batch(
        [f"d{day}" for day in range(101)], start_times_ns=[EPOCH_2025_NS + d * DAY_NS for d in range(101)]
    )
    partitions = _error(lambda: client.insert_arrow("spans", days))
    missing = _error(lambda: client.insert_arrow("spans_missing", batch))
    column = _error(lambda: client.insert_arrow("spans", batch.append_column("no_such", pa.array([1]))))
    unparsable = _error(lambda: client.insert_arrow("spans", pa.table({"start_time": ["yesterday"]})))

    def kind(error: BaseException) -> tuple[bool, bool, str]:
        classified = classify_clickhouse(error, "insert")
        return classified.permanent, classified.destination_down, classified.reason

    assert kind(refused) == (True, False, "VIOLATED_CONSTRAINT")
    assert kind(partitions) == (True, False, "TOO_MANY_PARTITIONS")
    assert kind(missing) == (False, True, "UNKNOWN_TABLE")
    assert kind(column) == (True, False, "NO_SUCH_COLUMN_IN_TABLE")
    assert kind(unparsable) == (True, False, "CANNOT_PARSE_DATETIME")
    assert kind(ConnectionRefusedError(111, "Connection refused")) == (False, True, "unreachable")
    assert classify_clickhouse(refused, "insert into spans").args[0].startswith("insert into spans: Code: 469.")


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, (True, False)), (404, (True, False)), (413, (True, False)), (408, (False, True)), (429, (False, True)),
     (500, (False, False)), (503, (False, True))],
)  # fmt: skip
def test_http_statuses_are_classified(status: int, expected: tuple[bool, bool]) -> None:
    error = classify_http_status(status, f"answered {status}")
    assert (error.permanent, error.destination_down, error.reason) == (*expected, f"http_{status}")


def test_the_clickhouse_exporter_raises_permanent_errors_for_refused_spans(client: Client) -> None:
    client.command(NO_POISON)
    with pytest.raises(PermanentExportError) as refused:
        ClickHouseExporter(client).export(span_batch(["poison"]), "b1")
    assert refused.value.reason == "VIOLATED_CONSTRAINT"
    with pytest.raises(PermanentExportError) as mismatch:
        ClickHouseExporter(client).export(pa.table({"x": [1]}), "b2")
    assert mismatch.value.reason == "schema_mismatch"
