"""The ClickHouse exporter's audit log: two collectors with distinct ids write one run concurrently and it
verifies intact; collector ids are validated and kept stable across restarts; replays add no links; a run
chained by the v1 code path (before migration 0008) keeps verifying under v1 rules."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter, resolve_collector_id
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.audit_chain import GENESIS, chain_link_v1, digests_of_batch, span_key
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.schema import conventions as conv

SYNC = {"mutations_sync": 2}


def _spans(run_id: str, names: list[str]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in names:
        provider.get_tracer("t").start_span(name, attributes={conv.AGENT_RUN_ID: run_id}).end()
    return list(exporter.get_finished_spans())


def test_two_collectors_writing_one_run_concurrently_verify_intact(client: Client, engine_dsn: str,
                                                                  database: str, tmp_path: Path) -> None:  # fmt: skip
    from agentledger.ingest.clickhouse import connect

    errors: list[BaseException] = []

    def collector(collector_id: str) -> None:
        own = connect(engine_dsn, database)
        try:
            config = ClickHouseExporterConfig(collector_id=collector_id, checkpoint_dir=tmp_path / "cp")
            exporter = ClickHouseExporter(own, config)
            for batch_number in range(6):
                spans = _spans("run_shared", [f"{collector_id}-{batch_number}-{i}" for i in range(3)])
                exporter.export(decode_request(encode_spans(spans), Identity("default")).batch,
                                f"{collector_id}:{batch_number}")  # fmt: skip
        except BaseException as error:
            errors.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=collector, args=(name,)) for name in ("edge-a", "edge-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    body = TestClient(create_app(client)).get("/v1/runs/run_shared/verify").json()

    assert errors == []
    assert (body["status"], body["links"], body["spans_checked"], body["chain_breaks"]) == ("intact", 12, 36, [])
    assert [(log["collector_id"], log["size"], log["checkpoint_size"], log["consistent"]) for log in body["logs"]] == [
        ("edge-a", 6, 6, True), ("edge-b", 6, 6, True)
    ]  # fmt: skip


def test_a_replayed_batch_adds_no_link_and_no_row(client: Client) -> None:
    batch = decode_request(encode_spans(_spans("run_r", ["once", "twice"])), Identity("default")).batch
    exporter = ClickHouseExporter(client)
    exporter.export(batch, "clickhouse:1:0-1:99")
    restarted = ClickHouseExporter(client)  # state reloaded from the table, as after a restart
    restarted.export(batch, "clickhouse:1:0-1:99")
    restarted.export(batch, "clickhouse:2:0-1:07")  # the same spans in another planned batch

    rows = client.query("SELECT count() FROM spans WHERE run_id = 'run_r'").result_rows
    links = client.query("SELECT collector_id, log_index, seq FROM audit_chain").result_rows
    body = TestClient(create_app(client)).get("/v1/runs/run_r/verify").json()

    assert (rows, links) == ([(2,)], [("collector", 0, 1)])
    assert (body["status"], body["links"]) == ("intact", 1)


def test_a_run_chained_by_the_v1_code_path_still_verifies(client: Client) -> None:
    """Rows as the pre-0008 exporter wrote them: v1 digests, v1 link hashes, no version columns."""
    batches = [decode_request(encode_spans(_spans("run_old", names)), Identity("default")).batch
               for names in (["plan", "read"], ["write"])]  # fmt: skip
    previous = GENESIS
    for seq, batch in enumerate(batches, start=1):
        SpanWriter(client).insert(batch)
        keys = [span_key(t, s) for t, s in zip(batch["trace_id"].to_pylist(), batch["span_id"].to_pylist(),
                                                 strict=True)]  # fmt: skip
        entries = sorted(zip(keys, digests_of_batch(batch, 1), strict=True))
        until = [4291747200] * len(entries)
        link = chain_link_v1(previous, 1_000 + seq, [k for k, _ in entries], [d for _, d in entries], until)
        client.insert("audit_chain", [["default", "run_old", seq, "spans", 1_000 + seq, [k for k, _ in entries],
                                       [d for _, d in entries], until, "", previous, link, ""]],
                      column_names=["tenant", "run_id", "seq", "kind", "batch_time_ns", "span_keys", "span_digests",
                                    "span_retain_until", "note", "prev_link", "link", "signature"])  # fmt: skip
        previous = link
    api = TestClient(create_app(client))

    before = api.get("/v1/runs/run_old/verify").json()
    client.command("ALTER TABLE spans UPDATE name = 'tidy' WHERE name = 'write'", settings=SYNC)
    after = api.get("/v1/runs/run_old/verify").json()

    stored = client.query("SELECT DISTINCT format_version, digest_version FROM audit_chain").result_rows
    assert stored == [(1, 1)]
    assert (before["status"], before["links"], before["spans_checked"], before["logs"]) == ("intact", 2, 3, [])
    assert after["status"] == "tampered"
    assert [(f["problem"], f["link_seq"]) for f in after["findings"]] == [("altered", 2)]


def test_collector_ids_are_validated_and_kept_in_the_data_folder(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as invalid:
        ClickHouseExporterConfig(collector_id="../etc")
    first = resolve_collector_id(ClickHouseExporterConfig(), tmp_path)
    again = resolve_collector_id(ClickHouseExporterConfig(), tmp_path)

    assert "collector_id" in str(invalid.value)
    assert first == again and first.startswith("collector-")
    assert (tmp_path / "collector_id").read_text() == first + "\n"
    assert resolve_collector_id(ClickHouseExporterConfig(collector_id="edge-7"), tmp_path) == "edge-7"


def test_links_after_the_latest_checkpoint_are_reported_and_shutdown_checkpoints_them(
    client: Client, tmp_path: Path
) -> None:
    config = ClickHouseExporterConfig(checkpoint_interval_s=3600, checkpoint_dir=tmp_path / "cp")
    exporter = ClickHouseExporter(client, config)
    for number, names in enumerate((["plan"], ["act"], ["report"])):
        batch = decode_request(encode_spans(_spans("run_i", names)), Identity("default")).batch
        exporter.export(batch, f"b{number}")
    api = TestClient(create_app(client, QueryApiConfig(checkpoint_dir=tmp_path / "cp")))

    held_back = api.get("/v1/runs/run_i/verify").json()
    exporter.shutdown()
    after_shutdown = api.get("/v1/runs/run_i/verify").json()

    assert (held_back["status"], held_back["links_after_checkpoint"]) == ("intact", 2)
    assert [(log["size"], log["checkpoint_size"]) for log in held_back["logs"]] == [(3, 1)]
    assert (after_shutdown["status"], after_shutdown["links_after_checkpoint"]) == ("intact", 0)
    assert len((tmp_path / "cp" / "default~collector.checkpoints.jsonl").read_text().splitlines()) == 2


def test_a_failed_chain_insert_is_retried_into_the_same_place_in_the_log(client: Client) -> None:
    from agentledger.collector.component import ExportError

    exporter = ClickHouseExporter(client)
    first, second = (decode_request(encode_spans(_spans("run_f", names)), Identity("default")).batch
                     for names in (["plan"], ["act", "report"]))  # fmt: skip
    exporter.export(first, "b1")
    client.command("ALTER TABLE audit_chain ADD CONSTRAINT only_one_link CHECK log_index < 1")
    with pytest.raises(ExportError) as failed:
        exporter.export(second, "b2")  # the spans land, their link does not
    client.command("ALTER TABLE audit_chain DROP CONSTRAINT only_one_link")
    exporter.export(second, "b2")  # the export worker's retry

    links = client.query("SELECT log_index, seq, length(span_keys) FROM audit_chain ORDER BY log_index").result_rows
    spans = client.query("SELECT count() FROM spans WHERE run_id = 'run_f'").result_rows
    body = TestClient(create_app(client)).get("/v1/runs/run_f/verify").json()

    assert "only_one_link" in str(failed.value)
    assert (links, spans) == ([(0, 1, 1), (1, 2, 2)], [(3,)])
    assert (body["status"], body["chain_breaks"], body["logs"][0]["checkpoint_size"]) == ("intact", [], 2)


def test_two_collectors_racing_to_chain_different_content_for_one_span_is_a_conflict(client: Client) -> None:
    """Both looked the span up before either linked it, so both stored and chained their copy."""
    from agentledger.ingest.audit_chain import ChainWriter

    original = _spans("run_race", ["pay"])[0]
    other = _spans("run_race", ["pay twice"])[0]
    other._context = original.context
    ClickHouseExporter(client, ClickHouseExporterConfig(collector_id="edge-a")).export(
        decode_request(encode_spans([original]), Identity("default")).batch, "a1"
    )
    late = decode_request(encode_spans([other]), Identity("default")).batch
    SpanWriter(client).insert(late)  # what edge-b's exporter does once its screen found nothing chained
    writer = ChainWriter(client, "edge-b")
    writer.append(writer.links_for(late, 5, [4291747200]))

    body = TestClient(create_app(client)).get("/v1/runs/run_race/verify").json()

    assert (body["status"], body["chain_breaks"]) == ("intact", [])
    assert [(f["span_id"], f["problem"]) for f in body["findings"]] == [(format(original.context.span_id, "016x"),
                                                                         "conflict")]  # fmt: skip
    assert body["findings"][0]["note"].startswith("chained with different content by more than one collector (")
