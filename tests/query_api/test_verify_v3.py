"""Span digest v3 (v2's fields plus conversation_id): a stored span whose conversation_id is changed in
ClickHouse is altered, and a chain written under digest v2 before the column existed still verifies."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.audit_chain import DIGEST_V2, DIGEST_V3, ChainWriter, digests_of_batch
from agentledger.ingest.span_writer import SpanWriter
from agentledger.query_api.app import create_app
from agentledger.schema import conventions as conv
from tests.conftest import direct_pipeline

SYNC = {"mutations_sync": 2}
FOREVER = 4291747200


def _spans(run_id: str, names: list[str]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for name in names:
        tracer.start_span(name, attributes={conv.AGENT_RUN_ID: run_id}).end()
    return list(exporter.get_finished_spans())


def _verify(client: Client, run_id: str) -> dict[str, object]:
    response = TestClient(create_app(client)).get(f"/v1/runs/{run_id}/verify")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _findings(body: dict[str, object]) -> set[tuple[str, str]]:
    return {(str(f["span_id"]), str(f["problem"])) for f in body["findings"]}  # type: ignore[attr-defined]


def _chain_under_v2(client: Client, run_id: str, names: list[str]) -> list[str]:
    """Spans stored and chained as before migration 0011: links of digest_version 2."""
    batch = decode_request(encode_spans(_spans(run_id, names)), Identity("default")).batch
    SpanWriter(client).insert(batch)
    writer = ChainWriter(client, "edge-old")
    drafts = writer.links_for(batch, 1_767_225_601_000_000_000, [FOREVER] * batch.num_rows,
                              digests_of_batch(batch, DIGEST_V2))  # fmt: skip
    writer.append([dataclasses.replace(draft, digest_version=DIGEST_V2) for draft in drafts])
    return list(batch["span_id"].to_pylist())


def test_the_collector_chains_under_v3_and_a_changed_conversation_id_is_altered(client: Client) -> None:
    pipeline = direct_pipeline(client)
    spans = _spans("run_c", ["plan", "act"])
    pipeline.consume(decode_request(encode_spans(spans), Identity("default")).batch)
    versions = client.query("SELECT DISTINCT digest_version FROM audit_chain WHERE run_id = 'run_c'").result_rows
    assert versions == [(DIGEST_V3,)]
    assert _verify(client, "run_c")["status"] == "intact"
    target = format(spans[1].context.span_id, "016x")

    client.command(f"ALTER TABLE spans UPDATE conversation_id = 'default/tests/other-thread'"
                   f" WHERE span_id = '{target}'", settings=SYNC)  # fmt: skip
    body = _verify(client, "run_c")

    assert body["status"] == "tampered"
    assert _findings(body) == {(target, "altered")}


def test_a_chain_written_under_v2_still_verifies_intact(client: Client) -> None:
    span_ids = _chain_under_v2(client, "run_old", ["plan", "act"])
    versions = client.query("SELECT DISTINCT digest_version FROM audit_chain WHERE run_id = 'run_old'").result_rows
    assert versions == [(DIGEST_V2,)]

    body = _verify(client, "run_old")
    assert (body["status"], body["spans_checked"], body["findings"]) == ("intact", 2, [])

    # Under v2 the new column is not covered (that is what v3 adds); any v2 field still is.
    client.command(f"ALTER TABLE spans UPDATE name = 'tidy' WHERE span_id = '{span_ids[0]}'", settings=SYNC)
    assert _findings(_verify(client, "run_old")) == {(span_ids[0], "altered")}


def test_the_offline_bundle_verifier_checks_v2_and_v3_digests(client: Client, tmp_path: Path) -> None:
    _chain_under_v2(client, "run_old", ["plan"])
    pipeline = direct_pipeline(client)
    pipeline.consume(decode_request(encode_spans(_spans("run_old", ["act"])), Identity("default")).batch)
    api = TestClient(create_app(client))
    response = api.get("/v1/runs/run_old/evidence")
    assert response.status_code == 200, response.text
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(response.content)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert {span["digest_version"] for span in json.loads(archive.read("spans.json"))} == {DIGEST_V2, DIGEST_V3}
    script = tmp_path / "verify_bundle.py"
    script.write_bytes(archive.read("verify_bundle.py"))

    result = subprocess.run([sys.executable, "-I", str(script), str(bundle)], capture_output=True, text=True,
                            cwd=tmp_path, check=False)  # fmt: skip

    assert (result.returncode, result.stdout.strip().splitlines()[-1]) == (0, "verified"), result.stdout
