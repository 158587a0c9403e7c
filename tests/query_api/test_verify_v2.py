"""Audit chain v2 against an attacker who has full SQL access but not the signing key (signing on, a
checkpoint sink outside ClickHouse): flipping a link's kind, rewriting a note, dropping the tail, erasing a
run, reordering links, replaying an old link and re-sending span ids through the collector are each
detected and named; legitimate deletions verify as deleted; the check covers what the timeline shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.component import SpanBatch
from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.ingest.signing import LinkSigner, generate_key_pair
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.schema import conventions as conv

SYNC = {"mutations_sync": 2}


@dataclass
class Ledger:
    """A signing collector and the query API that checks it, sharing one key and checkpoint folder."""

    client: Client
    exporter: ClickHouseExporter
    telemetry: CollectorTelemetry
    api: TestClient
    batches: int = 0

    def send(self, spans: list[ReadableSpan]) -> SpanBatch:
        batch = decode_request(encode_spans(spans), Identity("default")).batch
        self.batches += 1
        self.exporter.export(batch, f"test:{self.batches}")
        return batch

    def verify(self, run_id: str) -> dict[str, object]:
        response = self.api.get(f"/v1/runs/{run_id}/verify")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body


@pytest.fixture
def ledger(client: Client, tmp_path: Path) -> Ledger:
    public_key = generate_key_pair(tmp_path / "signing.pem")
    telemetry = CollectorTelemetry()
    config = ClickHouseExporterConfig(signing_key_file=tmp_path / "signing.pem", checkpoint_dir=tmp_path / "cp",
                                      collector_id="edge-1")  # fmt: skip
    exporter = ClickHouseExporter(client, config, telemetry=telemetry)
    # As `up` does: the API signs its tombstones with the exporter's key, into a log of its own.
    api_config = QueryApiConfig(audit_public_key_pem=public_key, checkpoint_dir=tmp_path / "cp",
                                audit_signer=LinkSigner.from_file(tmp_path / "signing.pem"),
                                audit_collector_id="edge-1.api")  # fmt: skip
    return Ledger(client, exporter, telemetry, TestClient(create_app(client, api_config)))


def spans(run_id: str, names: list[str], attributes: dict[str, str] | None = None) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for name in names:
        tracer.start_span(name, attributes={conv.AGENT_RUN_ID: run_id, **(attributes or {})}).end()
    return list(exporter.get_finished_spans())


def span_id(span: ReadableSpan) -> str:
    return format(span.context.span_id, "016x")


def breaks(body: dict[str, object]) -> list[tuple[str, int]]:
    return [(b["finding"], b["seq"]) for b in body["chain_breaks"]]  # type: ignore[attr-defined, index]


def findings(body: dict[str, object]) -> set[tuple[str, str]]:
    return {(f["span_id"], f["problem"]) for f in body["findings"]}  # type: ignore[attr-defined, index]


def two_batches(ledger: Ledger, run_id: str = "run_a") -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    first, second = spans(run_id, ["plan", "read"]), spans(run_id, ["write", "report"])
    ledger.send(first)
    ledger.send(second)
    return first, second


def test_an_untouched_signed_run_is_intact_and_covered_by_its_checkpoint(ledger: Ledger) -> None:
    two_batches(ledger)

    body = ledger.verify("run_a")

    assert (body["status"], body["links"], body["spans_checked"], body["signatures_checked"]) == ("intact", 2, 4, True)
    assert body["chain_breaks"] == [] and body["findings"] == [] and body["links_after_checkpoint"] == 0
    assert [(log["collector_id"], log["size"], log["checkpoint_size"], log["consistent"])  # type: ignore[attr-defined]
            for log in body["logs"]] == [("edge-1", 2, 2, True)]  # type: ignore[attr-defined]  # fmt: skip


def test_flipping_a_links_kind_to_tombstone_and_deleting_its_spans_is_named(ledger: Ledger) -> None:
    """Finding 1: kind was outside the hash and the signature."""
    first, _ = two_batches(ledger)
    ledger.client.command("ALTER TABLE audit_chain UPDATE kind = 'tombstone' WHERE seq = 1", settings=SYNC)
    ledger.client.command(f"ALTER TABLE spans DELETE WHERE span_id IN ('{span_id(first[0])}', '{span_id(first[1])}')",
                          settings=SYNC)  # fmt: skip

    body = ledger.verify("run_a")

    assert body["status"] == "tampered"
    assert breaks(body) == [("altered_link", 1)]
    assert body["chain_breaks"][0]["problem"] == (  # type: ignore[index]
        "its hash does not match its contents (kind, note, entries or position changed)"
    )


def test_dropping_the_runs_last_link_and_its_spans_is_truncation(ledger: Ledger) -> None:
    """Finding 2: tail truncation."""
    _, second = two_batches(ledger)
    ledger.client.command("ALTER TABLE audit_chain DELETE WHERE run_id = 'run_a' AND seq = 2", settings=SYNC)
    ledger.client.command(f"ALTER TABLE spans DELETE WHERE span_id IN ('{span_id(second[0])}', '{span_id(second[1])}')",
                          settings=SYNC)  # fmt: skip

    body = ledger.verify("run_a")

    assert body["status"] == "tampered"
    assert breaks(body) == [("truncated", 0), ("root_mismatch", 0)]
    assert body["chain_breaks"][0]["problem"] == (  # type: ignore[index]
        "log edge-1 ends at 1 links but a checkpoint covers 2: its last 1 link(s) were removed"
    )


def test_a_resent_span_id_with_new_content_is_a_conflict_and_the_stored_span_stays(ledger: Ledger) -> None:
    """Finding 3: any agent token could overwrite a stored span through the collector."""
    original = spans("run_a", ["pay"], {"amount": "10", "tool.access": "write"})[0]
    ledger.send([original])
    forged = spans("run_a", ["pay"], {"amount": "10000", "tool.access": "read"})[0]
    forged._context = original.context  # the same trace and span id, other content
    ledger.send([forged])
    ledger.send([original])  # an exact re-send (a retry) is idempotent
    ledger.client.command("OPTIMIZE TABLE spans FINAL")

    body = ledger.verify("run_a")

    stored = ledger.client.query("SELECT attributes['amount'] FROM spans WHERE run_id = 'run_a'").result_rows
    assert stored == [("10",)]
    assert (body["status"], body["links"], breaks(body)) == ("intact", 1, [])
    assert findings(body) == {(span_id(original), "conflict")}
    note = body["findings"][0]["note"]  # type: ignore[index]
    assert note.startswith("conflicting re-send: collector edge-1 received this span id again with other content")
    assert ledger.client.query("SELECT count() FROM span_conflicts").result_rows == [(1,)]
    assert (ledger.telemetry.value("agentledger_span_conflicts_total"),
            ledger.telemetry.value("agentledger_spans_resent_total")) == (1, 1)  # fmt: skip


def test_a_run_erased_from_spans_and_chain_but_still_indexed_is_tampered_not_unknown(ledger: Ledger) -> None:
    """Finding 4: erasure answered 404 while /v1/runs listed the run."""
    two_batches(ledger)
    ledger.client.command("ALTER TABLE spans DELETE WHERE run_id = 'run_a'", settings=SYNC)
    ledger.client.command("ALTER TABLE audit_chain DELETE WHERE run_id = 'run_a'", settings=SYNC)

    body = ledger.verify("run_a")

    assert body["status"] == "tampered"
    assert breaks(body) == [("erased", 0)]
    assert body["chain_breaks"][0]["problem"] == (  # type: ignore[index]
        "the run index lists this run but its record is gone: its spans and chain links were removed"
    )


def test_a_run_erased_from_every_table_is_a_gap_in_its_collectors_log(ledger: Ledger) -> None:
    two_batches(ledger, "run_a")
    ledger.send(spans("run_b", ["other"]))
    for table in ("spans", "audit_chain", "runs"):
        ledger.client.command(f"ALTER TABLE {table} DELETE WHERE run_id = 'run_a'", settings=SYNC)

    unknown = ledger.api.get("/v1/runs/run_a/verify")
    log = ledger.api.get("/v1/audit/log/verify").json()
    neighbour = ledger.verify("run_b")

    assert unknown.status_code == 404
    assert log["status"] == "inconsistent"
    assert [(p["finding"], p["log_index"]) for p in log["logs"][0]["problems"]] == [
        ("log_gap", 0), ("root_mismatch", None), ("root_mismatch", None), ("root_mismatch", None)
    ]  # every checkpoint (sizes 1, 2, 3) no longer recomputes
    assert log["logs"][0]["problems"][0]["problem"] == (
        "log edge-1 has no link at indices 0, 1: links were removed from it"
    )
    assert neighbour["status"] == "tampered"  # the log it is in no longer matches its checkpoints


def test_a_signed_deletion_verifies_as_deleted_and_its_note_cannot_be_rewritten(ledger: Ledger) -> None:
    """Finding 5: the tombstone was written without the signer, and its note was outside the hash."""
    two_batches(ledger)
    deletion = ledger.api.delete("/v1/runs/run_a", params={"reason": "GDPR request 7"})

    deleted = ledger.verify("run_a")
    ledger.client.command("ALTER TABLE audit_chain UPDATE note = 'routine cleanup' WHERE kind = 'tombstone'",
                          settings=SYNC)  # fmt: skip
    rewritten = ledger.verify("run_a")

    assert deletion.status_code == 200 and deletion.json()["tombstone_seq"] == 1
    assert (deleted["status"], deleted["signatures_checked"], deleted["chain_breaks"]) == ("pruned", True, [])
    assert {f["problem"] for f in deleted["findings"]} == {"deleted"}  # type: ignore[attr-defined]
    assert [log["collector_id"] for log in deleted["logs"]] == ["edge-1", "edge-1.api"]  # type: ignore[attr-defined]
    assert rewritten["status"] == "tampered"
    assert breaks(rewritten) == [("altered_link", 1)]
    assert rewritten["chain_breaks"][0]["collector_id"] == "edge-1.api"  # type: ignore[index]


def test_verification_covers_the_third_party_spans_the_timeline_shows(ledger: Ledger) -> None:
    """Finding 6: spans of the run's traces filed under run id '' were shown but not checked."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("agent", attributes={conv.AGENT_RUN_ID: "run_a"}):
        with trace.use_span(tracer.start_span("http GET")) as child:
            child.end()
    finished = list(exporter.get_finished_spans())
    third_party = next(s for s in finished if s.name == "http GET")
    ledger.send([s for s in finished if s.name == "agent"])
    ledger.send([third_party])  # arrives alone: filed under run id ''
    timeline = ledger.api.get("/v1/runs/run_a/timeline").json()
    before = ledger.verify("run_a")
    ledger.client.command(f"ALTER TABLE spans UPDATE name = 'http POST' WHERE span_id = '{span_id(third_party)}'",
                          settings=SYNC)  # fmt: skip

    after = ledger.verify("run_a")

    filed = ledger.client.query(f"SELECT run_id FROM spans WHERE span_id = '{span_id(third_party)}'").result_rows
    assert filed == [("",)]
    assert {e["span_id"] for e in timeline["entries"]} >= {span_id(third_party)}
    assert (before["status"], before["spans_checked"]) == ("intact", 2)
    assert after["status"] == "tampered"
    assert findings(after) == {(span_id(third_party), "altered")}


def test_reordered_links_are_named(ledger: Ledger) -> None:
    two_batches(ledger)
    ledger.client.command("ALTER TABLE audit_chain UPDATE log_index = 1 - log_index WHERE run_id = 'run_a'",
                          settings=SYNC)  # fmt: skip

    body = ledger.verify("run_a")

    assert body["status"] == "tampered"
    assert breaks(body) == [
        ("altered_link", 2), ("altered_link", 1), ("reordered", 2), ("broken_pointer", 2), ("reordered", 1),
        ("broken_pointer", 1), ("root_mismatch", 0), ("root_mismatch", 0),
    ]  # fmt: skip
    problems = [b["problem"] for b in body["chain_breaks"]  # type: ignore[attr-defined]
                if b["finding"] == "reordered"]  # fmt: skip
    assert problems == ["link 2 of run 'run_a' comes before link 1 in log edge-1",
                        "link 1 of run 'run_a' comes after link 2 in log edge-1"]  # fmt: skip


def test_a_replayed_old_link_is_named(ledger: Ledger) -> None:
    two_batches(ledger)
    ledger.client.command("INSERT INTO audit_chain SELECT * FROM audit_chain WHERE run_id = 'run_a' AND seq = 1")

    body = ledger.verify("run_a")

    assert body["status"] == "tampered"
    assert breaks(body) == [("replayed_link", 1), ("replayed_link", 1)]
    assert body["chain_breaks"][0]["problem"] == (  # type: ignore[index]
        "link 1 of run 'run_a' is stored twice in log edge-1: an old link inserted again"
    )
    assert body["chain_breaks"][1]["problem"] == (  # type: ignore[index]
        "log edge-1 holds 2 copies of its link 0 (run 'run_a', seq 1): a stored link inserted again"
    )


def test_checkpoints_are_listed_and_the_log_verifies(ledger: Ledger, tmp_path: Path) -> None:
    two_batches(ledger)

    checkpoints = ledger.api.get("/v1/audit/checkpoints").json()
    log = ledger.api.get("/v1/audit/log/verify").json()
    lines = (tmp_path / "cp" / "default~edge-1.checkpoints.jsonl").read_text().splitlines()

    assert [(c["collector_id"], c["size"]) for c in checkpoints] == [("edge-1", 2)]
    assert checkpoints[0]["signature"] != ""
    assert len(lines) == 2
    assert (log["status"], [(lg["size"], lg["checkpoint_size"]) for lg in log["logs"]]) == ("consistent", [(2, 2)])
