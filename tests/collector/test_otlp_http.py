"""The OTLP/HTTP receiver's responses, per the OTLP specification, over the real pipeline into chDB."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from agentledger.collector.component import ExportError, SpanBatch
from agentledger.collector.config import HttpProtocolConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from tests.conftest import direct_pipeline, otlp_ingest

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _spans(count: int = 2) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for index in range(count):
        with tracer.start_as_current_span(f"span-{index}", attributes={"agent.run.id": "run_http"}):
            pass
    return list(exporter.get_finished_spans())


def _body(count: int = 2) -> bytes:
    return bytes(encode_spans(_spans(count)).SerializeToString())


def _stored(client: Client) -> int:
    return int(client.command("SELECT count() FROM spans"))


@pytest.fixture
def telemetry() -> CollectorTelemetry:
    return CollectorTelemetry()


@pytest.fixture
def http(client: Client, telemetry: CollectorTelemetry) -> TestClient:
    protocol = HttpProtocolConfig(max_request_bytes=64 * 1024)
    return TestClient(create_otlp_http_app(protocol, otlp_ingest(direct_pipeline(client), telemetry)))


def test_protobuf_request_is_stored_and_answered_with_an_empty_response(
    http: TestClient, client: Client, telemetry: CollectorTelemetry
) -> None:
    response = http.post("/v1/traces", content=_body(3), headers=PROTOBUF)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 0
    assert _stored(client) == 3
    assert telemetry.value("agentledger_spans_accepted_total") == 3


def test_gzip_body_is_accepted(http: TestClient, client: Client) -> None:
    response = http.post(
        "/v1/traces", content=gzip.compress(_body(2)), headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )

    assert response.status_code == 200
    assert _stored(client) == 2


def test_json_request_with_hex_ids_is_stored_with_those_ids(http: TestClient, client: Client) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-agent"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "execute_tool lookup",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000500000000",
                                "attributes": [
                                    {"key": "agent.run.id", "value": {"stringValue": "run_json"}},
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                                ],
                                "futureField": "ignored",
                            }
                        ],
                    }
                ],
            }
        ]
    }

    response = http.post("/v1/traces", content=json.dumps(body), headers={"Content-Type": "application/json"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    rows = client.query(
        "SELECT trace_id, span_id, run_id, entry_type, service_name, duration_ns, input_tokens FROM spans"
    ).result_rows
    assert rows == [
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "run_json", "tool_call", "json-agent", 500000000, 12)
    ]


def test_malformed_protobuf_is_400_with_a_status_message(http: TestClient, client: Client) -> None:
    response = http.post("/v1/traces", content=b"\x0a\xff\xff\xff\x0fnot-a-protobuf", headers=PROTOBUF)

    assert response.status_code == 400
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3
    assert status.message.startswith("body is not a valid ExportTraceServiceRequest protobuf")
    assert _stored(client) == 0


def test_malformed_json_is_400_with_a_json_status(http: TestClient) -> None:
    response = http.post("/v1/traces", content=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert response.json()["message"].startswith("body is not valid JSON")


def test_wrong_content_type_is_415(http: TestClient, telemetry: CollectorTelemetry) -> None:
    response = http.post("/v1/traces", content=_body(), headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    status = status_pb2.Status.FromString(response.content)
    assert status.message == "Content-Type must be application/x-protobuf or application/json"
    assert telemetry.value("agentledger_requests_total", ("http", "415")) == 1


def test_body_over_the_limit_is_413_and_so_is_a_gzip_bomb(http: TestClient) -> None:
    too_big = http.post("/v1/traces", content=b"\0" * (64 * 1024 + 1), headers=PROTOBUF)
    bomb = http.post(
        "/v1/traces",
        content=gzip.compress(b"\0" * (10 * 1024 * 1024)),
        headers={**PROTOBUF, "Content-Encoding": "gzip"},
    )

    assert too_big.status_code == 413
    assert bomb.status_code == 413
    assert status_pb2.Status.FromString(bomb.content).message == "request body exceeds 65536 bytes"


def test_span_with_invalid_ids_is_rejected_as_partial_success(http: TestClient, client: Client) -> None:
    request = encode_spans(_spans(2))
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01\x02"

    response = http.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)

    assert response.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 1
    assert parsed.partial_success.error_message == "1 span(s) rejected: trace_id must be 16 bytes and span_id 8 bytes"
    assert _stored(client) == 1


class _DownExporter:
    def export(self, batch: SpanBatch, batch_id: str) -> None:
        raise ExportError("ClickHouse is down")

    def shutdown(self) -> None:
        pass


def test_exporter_failure_is_503_with_retry_after_and_nothing_acknowledged(telemetry: CollectorTelemetry) -> None:
    app = create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(Pipeline([], [("down", _DownExporter())]), telemetry))

    response = TestClient(app).post("/v1/traces", content=_body(), headers=PROTOBUF)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert status_pb2.Status.FromString(response.content).code == 14
    assert telemetry.value("agentledger_spans_accepted_total") == 0
    assert telemetry.value("agentledger_spans_refused_total", ("reason", "PipelineUnavailable")) == 2


class _DropNamedSpans:
    """A processor that keeps only spans not named span-0: proves processors run before exporters."""

    def process(self, batch: SpanBatch) -> SpanBatch:
        import pyarrow.compute as pc

        return batch.filter(pc.not_equal(batch["name"], pa.scalar("span-0")))

    def shutdown(self) -> None:
        pass


def test_processors_transform_the_batch_before_export(client: Client, telemetry: CollectorTelemetry) -> None:
    pipeline = Pipeline([_DropNamedSpans()], [("clickhouse", ClickHouseExporter(client))])
    app = create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline, telemetry))

    TestClient(app).post("/v1/traces", content=_body(3), headers=PROTOBUF)

    assert sorted(row[0] for row in client.query("SELECT name FROM spans").result_rows) == ["span-1", "span-2"]


def test_metrics_are_prometheus_text(http: TestClient) -> None:
    http.post("/v1/traces", content=_body(2), headers=PROTOBUF)

    text = http.get("/metrics").text

    assert "agentledger_spans_received_total 2\n" in text
    assert 'agentledger_requests_total{http="200"} 1\n' in text


def test_with_the_spool_off_spans_storage_refuses_for_good_are_400_not_retried_forever(
    http: TestClient, client: Client, telemetry: CollectorTelemetry
) -> None:
    # A CHECK constraint makes ClickHouse refuse these spans for good (VIOLATED_CONSTRAINT): waiting cannot
    # help, so the sender must hear 400 (OTLP: do not retry), not 503, which it would retry forever.
    client.command("ALTER TABLE spans ADD CONSTRAINT no_spans CHECK name != 'span-0'")

    response = http.post("/v1/traces", content=_body(), headers=PROTOBUF)

    assert response.status_code == 400
    assert "retry-after" not in response.headers
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "refused for good" in status.message and "VIOLATED_CONSTRAINT" in status.message
    assert telemetry.value("agentledger_spans_refused_total", ("reason", "PipelineRejected")) == 2
    assert _stored(client) == 0
