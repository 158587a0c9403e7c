"""The stock OTel SDK exporters (gRPC and HTTP) through bearer-token auth, with identity stamped on spans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from agentledger.collector.config import AuthConfig, GrpcProtocolConfig, HttpProtocolConfig, OtlpReceiverConfig
from agentledger.collector.receivers.otlp_grpc import start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.credentials import add_credential
from agentledger.schema import conventions as conv
from tests.conftest import RunningService, direct_pipeline, free_port, otlp_ingest, start_service, wait_for_timeline


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "credentials.yaml"
    token_a = add_credential(path, "agent-a", tenant="default", role="agent", agent_id="refund-agent-1")
    token_b = add_credential(path, "agent-b", tenant="other", role="agent", agent_id="coding-agent-1")
    return path, token_a, token_b


@pytest.fixture
def authenticated(tmp_path: Path, tokens: tuple[Path, str, str]) -> Iterator[RunningService]:
    config = tmp_path / "agentledger.yaml"
    config.write_text(f"receivers:\n  otlp:\n    auth:\n      enabled: true\n      credentials_file: {tokens[0]}\n")
    service = start_service(tmp_path / "data", "--config", str(config))
    yield service
    service.stop()


def _send(exporter: object, run_id: str, claimed_agent: str) -> SpanExportResult:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attributes = {conv.AGENT_RUN_ID: run_id, conv.GEN_AI_AGENT_ID: claimed_agent}
    provider.get_tracer("t").start_span("invoke_agent", attributes=attributes).end()
    return exporter.export(memory.get_finished_spans())  # type: ignore[attr-defined, no-any-return]


@pytest.mark.slow
def test_sdk_grpc_and_http_exporters_with_tokens_get_identity_stamped(
    authenticated: RunningService, tokens: tuple[Path, str, str]
) -> None:
    _, token_a, _ = tokens
    grpc_exporter = GrpcSpanExporter(
        endpoint=authenticated.grpc_endpoint, insecure=True, headers={"authorization": f"Bearer {token_a}"}
    )
    http_exporter = HttpSpanExporter(
        endpoint=f"{authenticated.collector_url}/v1/traces", headers={"Authorization": f"Bearer {token_a}"}
    )

    assert _send(grpc_exporter, "run_grpc", "refund-agent-1") is SpanExportResult.SUCCESS
    assert _send(http_exporter, "run_http", "someone-else") is SpanExportResult.SUCCESS

    grpc_entry = wait_for_timeline(authenticated.api_url, "run_grpc", 1)["entries"][0]
    http_entry = wait_for_timeline(authenticated.api_url, "run_http", 1)["entries"][0]
    assert (grpc_entry["verified_agent_id"], grpc_entry["identity_mismatch"]) == ("refund-agent-1", False)
    # Kept, but flagged: the span claims another agent than the token's.
    assert (http_entry["agent_id"], http_entry["verified_agent_id"], http_entry["identity_mismatch"]) == (
        "someone-else",
        "refund-agent-1",
        True,
    )


@pytest.mark.slow
def test_grpc_without_or_with_a_bad_token_is_unauthenticated(authenticated: RunningService) -> None:
    request = encode_spans([])
    with grpc.insecure_channel(authenticated.grpc_endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        for metadata in ((), (("authorization", "Bearer al_wrong"),)):
            with pytest.raises(grpc.RpcError) as error:
                stub.Export(request, metadata=metadata, timeout=10)
            assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_http_401_without_token_and_with_a_wrong_one(client: Client, tokens: tuple[Path, str, str]) -> None:
    receiver = OtlpReceiverConfig(auth=AuthConfig(enabled=True, credentials_file=tokens[0]))
    http = TestClient(
        create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(direct_pipeline(client), receiver=receiver))
    )
    body = encode_spans([]).SerializeToString()

    missing = http.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
    wrong = http.post(
        "/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer nope"}
    )
    right = http.post(
        "/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {tokens[1]}"},
    )

    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert wrong.status_code == 401
    assert right.status_code == 200


def test_the_tenant_comes_from_the_token_not_from_the_span(client: Client, tokens: tuple[Path, str, str]) -> None:
    receiver = OtlpReceiverConfig(auth=AuthConfig(enabled=True, credentials_file=tokens[0]))
    protocol = GrpcProtocolConfig(endpoint=f"127.0.0.1:{free_port()}")
    server = start_grpc_server(protocol, otlp_ingest(direct_pipeline(client), receiver=receiver))
    try:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        provider.get_tracer("t").start_span("x", attributes={conv.AGENTLEDGER_TENANT_ID: "default"}).end()
        exporter = GrpcSpanExporter(
            endpoint=protocol.endpoint, insecure=True, headers={"authorization": f"Bearer {tokens[2]}"}
        )
        assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        server.stop(0)

    assert client.query("SELECT tenant, verified_agent_id FROM spans").result_rows == [("other", "coding-agent-1")]


def test_grpc_with_the_spool_off_spans_refused_for_good_are_invalid_argument(client: Client) -> None:
    # ClickHouse refuses the span for good: the SDK exporter must hear a non-retryable code, not UNAVAILABLE.
    client.command("ALTER TABLE spans ADD CONSTRAINT no_poison CHECK name != 'poison'")
    protocol = GrpcProtocolConfig(endpoint=f"127.0.0.1:{free_port()}")
    server = start_grpc_server(protocol, otlp_ingest(direct_pipeline(client)))
    try:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        provider.get_tracer("t").start_span("poison", attributes={conv.AGENT_RUN_ID: "run_poison"}).end()
        with grpc.insecure_channel(protocol.endpoint) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as error:
                stub.Export(encode_spans(memory.get_finished_spans()), timeout=10)
    finally:
        server.stop(0)

    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "refused for good" in (error.value.details() or "")
    assert client.command("SELECT count() FROM spans") == 0
