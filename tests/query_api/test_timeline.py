"""The timeline endpoint over a real chDB database: ordering across traces, tenant scoping, errors."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.config import PipelineConfig
from agentledger.collector.pipeline import build_pipeline
from agentledger.collector.receivers.otlp_decode import decode_request
from agentledger.query_api.app import QueryApiConfig, create_app
from agentledger.query_api.times import rfc3339_nanos
from agentledger.schema import conventions as conv


def _ingest(client: Client, spans: Iterable[ReadableSpan], tenant: str = "default") -> None:
    build_pipeline(PipelineConfig(), client).consume(decode_request(encode_spans(list(spans)), tenant).batch)


def _record(build: object) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("tests"))  # type: ignore[operator]
    return list(exporter.get_finished_spans())


@pytest.fixture
def api(client: Client) -> TestClient:
    return TestClient(create_app(client, QueryApiConfig(tenant="default")))


def test_spans_without_run_id_in_the_runs_traces_are_included_others_are_not(client: Client, api: TestClient) -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span("root", attributes={conv.AGENT_RUN_ID: "run_a"}):
            with tracer.start_as_current_span("db query"):
                pass
        with tracer.start_as_current_span("unrelated trace"):
            pass

    _ingest(client, _record(build))

    body = api.get("/v1/runs/run_a/timeline").json()

    assert [entry["name"] for entry in body["entries"]] == ["root", "db query"]
    assert body["run"]["span_count"] == 1


def test_a_replayed_batch_does_not_duplicate_timeline_entries(client: Client, api: TestClient) -> None:
    spans = _record(lambda tracer: tracer.start_span("once", attributes={conv.AGENT_RUN_ID: "run_r"}).end())

    _ingest(client, spans)
    _ingest(client, spans)

    assert [e["name"] for e in api.get("/v1/runs/run_r/timeline").json()["entries"]] == ["once"]


def test_another_tenants_run_is_not_found(client: Client, api: TestClient) -> None:
    spans = _record(lambda tracer: tracer.start_span("secret", attributes={conv.AGENT_RUN_ID: "run_t"}).end())
    _ingest(client, spans, tenant="other-tenant")

    response = api.get("/v1/runs/run_t/timeline")

    assert response.status_code == 404
    assert response.json() == {"detail": "no run with id 'run_t'"}


def test_run_id_longer_than_256_characters_is_422(api: TestClient) -> None:
    response = api.get("/v1/runs/" + "x" * 257 + "/timeline")

    assert response.status_code == 422


def test_timeline_times_are_exact_nanoseconds(client: Client, api: TestClient) -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        span = tracer.start_span(
            "exact", attributes={conv.AGENT_RUN_ID: "run_ns"}, start_time=1_700_000_000_123_456_789
        )
        span.end(end_time=1_700_000_001_000_000_001)

    _ingest(client, _record(build))

    entry = api.get("/v1/runs/run_ns/timeline").json()["entries"][0]

    assert entry["start_unix_nano"] == 1_700_000_000_123_456_789
    assert entry["start_time"] == "2023-11-14T22:13:20.123456789Z"
    assert entry["duration_ms"] == 876.543212
    assert rfc3339_nanos(0) == "1970-01-01T00:00:00.000000000Z"


def test_healthz_and_openapi_document_the_404(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok", "clickhouse": "ok"}
    responses = api.get("/openapi.json").json()["paths"]["/v1/runs/{run_id}/timeline"]["get"]["responses"]
    assert set(responses) == {"200", "401", "403", "404", "422", "503"}
