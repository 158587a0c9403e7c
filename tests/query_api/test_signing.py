"""Signed chains: a consistent rewrite of spans and chain together passes the hash checks, but not the
Ed25519 signatures that only the collector's key could have made."""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.config import ClickHouseExporterConfig, ConfigError
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.ingest.audit_chain import ChainLink, link_from_row, span_digest
from agentledger.ingest.merkle import leaf_hash, root_text
from agentledger.ingest.signing import generate_key_pair
from agentledger.query_api import queries
from agentledger.query_api.app import QueryApiConfig, create_app


def _ingest_signed(client: Client, key: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("pay", attributes={"agent.run.id": "run_s", "amount": "10"}).end()
    batch = decode_request(encode_spans(exporter.get_finished_spans()), Identity("default")).batch
    ClickHouseExporter(client, ClickHouseExporterConfig(signing_key_file=key)).export(batch, "test:signed")


def _forge_consistently(client: Client) -> None:
    """Rewrites the span and recomputes its digest, the link and the table's checkpoint, as someone with
    database access could."""
    client.command("ALTER TABLE spans UPDATE attributes = map('amount', '10000') WHERE run_id = 'run_s'",
                   settings={"mutations_sync": 2})  # fmt: skip
    parameters = {"tenant": "default", "run_id": "run_s", "trace_ids": []}
    row = next(client.query(queries.RUN_SPANS_FOR_DIGEST, parameters=parameters).named_results())
    link = link_from_row(next(client.query(queries.RUN_CHAIN, parameters=parameters).named_results()))
    digest = span_digest(row)
    forged = ChainLink(**{**link.__dict__, "span_digests": (digest,)}).recomputed()
    client.command(
        "ALTER TABLE audit_chain UPDATE span_digests = [{d:String}], link = {l:String} WHERE run_id = 'run_s'",
        parameters={"d": digest, "l": forged}, settings={"mutations_sync": 2},
    )  # fmt: skip
    client.command(  # the log has this one link, so its root is the link's leaf
        "ALTER TABLE audit_checkpoints UPDATE root = {r:String} WHERE size = 1",
        parameters={"r": root_text(leaf_hash(forged))}, settings={"mutations_sync": 2},
    )  # fmt: skip


def test_signed_links_verify_and_a_consistent_forgery_does_not(client: Client, tmp_path: Path) -> None:
    public_key = generate_key_pair(tmp_path / "signing.pem")
    _ingest_signed(client, tmp_path / "signing.pem")
    with_key = TestClient(create_app(client, QueryApiConfig(audit_public_key_pem=public_key)))
    without_key = TestClient(create_app(client, QueryApiConfig("default")))

    before = with_key.get("/v1/runs/run_s/verify").json()
    _forge_consistently(client)
    after_without_key = without_key.get("/v1/runs/run_s/verify").json()
    after_with_key = with_key.get("/v1/runs/run_s/verify").json()

    assert (before["status"], before["signatures_checked"]) == ("intact", True)
    assert before["head_signature"] != ""
    assert after_without_key["status"] == "intact"  # hashes alone cannot catch a full rewrite
    assert after_with_key["status"] == "tampered"
    assert [(b["finding"], b["seq"], b["problem"]) for b in after_with_key["chain_breaks"]] == [
        ("bad_signature", 1, "its signature does not verify with the configured public key"),
        ("bad_checkpoint", 0, f"the checkpoint of size 1 at {before['logs'][0]['checkpoint_time']} does not verify"
                              " with the configured public key"),
    ]


def test_a_signing_key_that_is_not_ed25519_is_a_config_error(client: Client, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "ec.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip

    with pytest.raises(ConfigError) as error:
        ClickHouseExporter(client, ClickHouseExporterConfig(signing_key_file=key))

    assert str(error.value) == (
        f"exporters.clickhouse.signing_key_file: signing key {key} must be an Ed25519 key"
        " (agentledger keygen makes one)"
    )
