"""An evidence bundle verifies offline with nothing but the documented algorithm (no agentledger code in
the verifier below), and fails after one byte of it changes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.query_api.app import create_app
from tests.conftest import direct_pipeline


def offline_verify(bundle: bytes) -> list[str]:
    """Checks a bundle the way README.md and AUDIT_CHAIN.md in it describe; returns the problems found."""

    def jcs(value: object) -> bytes:  # RFC 8785 for strings, integers, booleans and arrays
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

    def sha(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    problems = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(bundle))
        manifest = json.loads(archive.read("manifest.json"))
        for name, expected in manifest["files"].items():
            if hashlib.sha256(archive.read(name)).hexdigest() != expected:
                problems.append(f"{name}: hash differs from manifest")
        spans = pq.read_table(io.BytesIO(archive.read("spans.parquet"))).to_pylist()
        chain = pq.read_table(io.BytesIO(archive.read("chain.parquet"))).to_pylist()
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        return [*problems, f"unreadable bundle: {error}"]
    stored = {}
    for span in spans:
        if sha(span["canonical"].encode()) != span["digest"]:
            problems.append(f"span {span['span_key']}: digest does not match its canonical values")
        stored[span["span_key"]] = span["digest"]
    previous = "sha256:" + "0" * 64
    chained = {}
    for link in sorted(chain, key=lambda item: item["seq"]):
        entries = [
            list(e) for e in zip(link["span_keys"], link["span_digests"], link["span_retain_until"], strict=True)
        ]
        if (
            link["prev_link"] != previous
            or sha(jcs([link["prev_link"], link["batch_time_ns"], entries])) != link["link"]
        ):
            problems.append(f"link {link['seq']}: broken")
        previous = link["link"]
        if link["kind"] == "spans":
            chained.update({key: digest for key, digest, _ in entries})
    if previous != manifest["head"]:
        problems.append("head differs from manifest")
    for key, digest in chained.items():
        if stored.get(key) != digest:
            problems.append(f"span {key}: {'removed' if key not in stored else 'altered'}")
    problems += [f"span {key}: not chained" for key in stored.keys() - chained.keys()]
    return problems


def _bundle(client: Client) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    pipeline = direct_pipeline(client)
    for batch in (["plan", "refund"], ["report"]):
        exporter.clear()
        for name in batch:
            tracer.start_span(name, attributes={"agent.run.id": "run_e", "note": 'Grüße "quoted"\n'}).end()
        pipeline.consume(decode_request(encode_spans(exporter.get_finished_spans()), Identity("default")).batch)
    response = TestClient(create_app(client)).get("/v1/runs/run_e/evidence")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    return response.content


def test_an_exported_bundle_verifies_offline(client: Client) -> None:
    bundle = _bundle(client)

    assert offline_verify(bundle) == []
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    assert json.loads(archive.read("verification.json"))["status"] == "intact"
    assert sorted(archive.namelist()) == sorted(
        ["spans.parquet", "chain.parquet", "timeline.json", "verification.json", "AUDIT_CHAIN.md", "README.md",
         "manifest.json"]
    )  # fmt: skip


def test_one_changed_byte_fails_verification(client: Client) -> None:
    bundle = _bundle(client)
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    files = {name: archive.read(name) for name in archive.namelist()}
    spans = bytearray(files["spans.parquet"])
    spans[len(spans) // 2] ^= 0x01
    files["spans.parquet"] = bytes(spans)
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)

    problems = offline_verify(tampered.getvalue())

    assert problems[0] == "spans.parquet: hash differs from manifest"


def test_a_rewritten_span_with_a_fixed_manifest_still_fails(client: Client) -> None:
    import pyarrow as pa

    bundle = _bundle(client)
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    files = {name: archive.read(name) for name in archive.namelist()}
    rows = pq.read_table(io.BytesIO(files["spans.parquet"])).to_pylist()
    rows[0]["canonical"] = rows[0]["canonical"].replace("Grüße", "Hello")
    rows[0]["digest"] = "sha256:" + hashlib.sha256(rows[0]["canonical"].encode()).hexdigest()
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    files["spans.parquet"] = sink.getvalue()
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["spans.parquet"] = hashlib.sha256(files["spans.parquet"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)

    problems = offline_verify(forged.getvalue())

    assert len(problems) == 1 and problems[0].endswith(": altered")
