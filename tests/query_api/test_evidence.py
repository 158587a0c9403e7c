"""An evidence bundle verifies offline with the self-contained verify_bundle.py it carries (run in a
subprocess, from the bundle, with no agentledger code), signatures and inclusion proofs included, and fails
after one byte of it changes or a span is rewritten consistently with the manifest."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.config import ClickHouseExporterConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.signing import generate_key_pair
from agentledger.query_api.app import QueryApiConfig, create_app


def offline_verify(bundle: bytes, directory: Path, public_key: Path | None = None) -> tuple[int, list[str]]:
    """Unpacks the bundle's own verify_bundle.py and runs it on the bundle in a fresh interpreter."""
    script = directory / "verify_bundle.py"
    script.write_bytes(zipfile.ZipFile(io.BytesIO(bundle)).read("verify_bundle.py"))
    (directory / "bundle.zip").write_bytes(bundle)
    command = [sys.executable, "-I", str(script), str(directory / "bundle.zip")]
    if public_key is not None:
        command += ["--public-key", str(public_key)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=directory, timeout=120, check=False)
    assert done.stderr == ""
    return done.returncode, done.stdout.splitlines()


def _bundle(client: Client, tmp_path: Path) -> tuple[bytes, Path]:
    public_key = generate_key_pair(tmp_path / "signing.pem")
    (tmp_path / "public.pem").write_text(public_key)
    config = ClickHouseExporterConfig(signing_key_file=tmp_path / "signing.pem", checkpoint_dir=tmp_path / "cp")
    pipeline = Pipeline([], [("clickhouse", ClickHouseExporter(client, config))])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for batch in (["plan", "refund"], ["report"]):
        exporter.clear()
        for name in batch:
            tracer.start_span(name, attributes={"agent.run.id": "run_e", "note": 'Grüße "quoted"\n'}).end()
        pipeline.consume(decode_request(encode_spans(exporter.get_finished_spans()), Identity("default")).batch)
    api_config = QueryApiConfig(audit_public_key_pem=public_key, checkpoint_dir=tmp_path / "cp")
    api = TestClient(create_app(client, api_config))
    response = api.get("/v1/runs/run_e/evidence")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    return response.content, tmp_path / "public.pem"


def _rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_an_exported_bundle_verifies_offline(client: Client, tmp_path: Path) -> None:
    bundle, public_key = _bundle(client, tmp_path)

    assert offline_verify(bundle, tmp_path, public_key) == (0, ["verified"])
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    assert json.loads(archive.read("verification.json"))["status"] == "intact"
    assert sorted(archive.namelist()) == sorted(
        ["spans.json", "chain.json", "checkpoints.json", "proofs.json", "spans.parquet", "chain.parquet",
         "timeline.json", "verification.json", "AUDIT_CHAIN.md", "verify_bundle.py", "README.md", "manifest.json"]
    )  # fmt: skip
    proofs = json.loads(archive.read("proofs.json"))
    checkpoints = json.loads(archive.read("checkpoints.json"))
    assert [(p["log_index"], p["tree_size"], len(p["path"])) for p in proofs] == [(0, 2, 1), (1, 2, 1)]
    assert [(c["collector_id"], c["size"]) for c in checkpoints] == [("collector", 2)]


def test_one_changed_byte_fails_verification(client: Client, tmp_path: Path) -> None:
    bundle, public_key = _bundle(client, tmp_path)
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    files = {name: archive.read(name) for name in archive.namelist()}
    spans = bytearray(files["spans.parquet"])
    spans[len(spans) // 2] ^= 0x01
    files["spans.parquet"] = bytes(spans)

    status, lines = offline_verify(_rezip(files), tmp_path, public_key)

    assert (status, lines) == (1, ["spans.parquet: its SHA-256 differs from manifest.json", "1 problem(s)"])


def test_a_rewritten_span_with_a_fixed_manifest_still_fails(client: Client, tmp_path: Path) -> None:
    bundle, public_key = _bundle(client, tmp_path)
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    files = {name: archive.read(name) for name in archive.namelist()}
    spans = json.loads(files["spans.json"])
    refund = next(span for span in spans if span["name"] == "refund")
    refund["values"]["name"] = "refund_small"
    files["spans.json"] = json.dumps(spans).encode()
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["spans.json"] = hashlib.sha256(files["spans.json"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()

    status, lines = offline_verify(_rezip(files), tmp_path, public_key)

    assert (status, lines) == (1, [f"span {refund['span_key']}: its digest does not match its values", "1 problem(s)"])


def test_a_flipped_link_kind_with_a_fixed_manifest_fails_its_hash(client: Client, tmp_path: Path) -> None:
    bundle, public_key = _bundle(client, tmp_path)
    archive = zipfile.ZipFile(io.BytesIO(bundle))
    files = {name: archive.read(name) for name in archive.namelist()}
    links = json.loads(files["chain.json"])
    links[0]["kind"] = "tombstone"
    files["chain.json"] = json.dumps(links).encode()
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["chain.json"] = hashlib.sha256(files["chain.json"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()

    status, lines = offline_verify(_rezip(files), tmp_path, public_key)

    where = "link 1 of run 'run_e' (collector)"
    keys = sorted(links[0]["span_keys"])
    # The signed hash and the inclusion proof still hold: it is the contents that no longer give them.
    assert (status, lines) == (1, [
        f"{where}: its hash does not match its contents",
        *[f"span {key}: in the bundle but never chained (inserted)" for key in keys], "3 problem(s)",
    ])  # fmt: skip
