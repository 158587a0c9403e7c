"""OTLP logs and metrics at the receiver (issue 14): GenAI content events, over HTTP (protobuf and JSON) and
gRPC, become rows of their span through the same processors (redaction included), whichever arrives first;
other records and every metric data point are answered as rejected and counted; unknown paths are counted."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from clickhouse_connect.driver.client import Client
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.testclient import TestClient

from agentledger.collector.config import GrpcProtocolConfig, HttpProtocolConfig
from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.collector.processors.redaction import RedactionConfig, RedactionProcessor
from agentledger.collector.receivers.otlp_grpc import start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.telemetry import CollectorTelemetry
from tests.conftest import free_port, otlp_ingest

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
START_NS = 1_764_000_000_000_000_000


def _text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def _kvlist(**values: AnyValue) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in values.items()]))


def _record(name: str, body: AnyValue | None = None, trace_id: bytes = TRACE_ID, span_id: bytes = SPAN_ID,
            **attributes: AnyValue) -> LogRecord:  # fmt: skip
    record = LogRecord(
        time_unix_nano=START_NS + 10, event_name=name, trace_id=trace_id, span_id=span_id,
        attributes=[KeyValue(key=key.replace("__", "."), value=value) for key, value in attributes.items()],
    )  # fmt: skip
    if body is not None:
        record.body.CopyFrom(body)
    return record


def _logs(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name", value=_text("support-bot"))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "opentelemetry.instrumentation.openai_v2"
    scope_logs.log_records.extend(records)
    return request


def _chat_span() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=_text("support-bot"))
    span = Span(
        trace_id=TRACE_ID, span_id=SPAN_ID, name="chat gpt-4.1-mini", kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=START_NS, end_time_unix_nano=START_NS + 1000,
        attributes=[KeyValue(key="gen_ai.operation.name", value=_text("chat")),
                    KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=57))],
    )  # fmt: skip
    resource_spans.scope_spans.add().spans.append(span)
    return request


def _content_events() -> list[LogRecord]:
    return [
        _record("gen_ai.user.message", _kvlist(content=_text("Refund A-1001, mail me at jo@example.com"))),
        _record("gen_ai.choice", _kvlist(
            index=AnyValue(int_value=0), finish_reason=_text("tool_calls"),
            message=_kvlist(role=_text("assistant"), tool_calls=AnyValue(array_value=ArrayValue(values=[_kvlist(
                id=_text("call_1"), type=_text("function"),
                function=_kvlist(name=_text("issue_refund"), arguments=_text('{"order_id":"A-1001"}')),
            )]))),
        ), gen_ai__system=_text("openai")),
    ]  # fmt: skip


def _rows(client: Client) -> list[dict[str, Any]]:
    result = client.query(
        "SELECT name, run_id, trace_id, parent_span_id, entry_type, input_tokens, input_messages, output_messages,"
        " attributes FROM spans FINAL ORDER BY start_time, name"
    )
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


@pytest.fixture
def telemetry() -> CollectorTelemetry:
    return CollectorTelemetry()


@pytest.fixture
def pipeline(client: Client) -> Pipeline:
    # The processors the default pipeline runs, in its order.
    processors = [NormalizeProcessor(), RedactionProcessor(RedactionConfig())]
    return Pipeline(processors, [("clickhouse", ClickHouseExporter(client))])


@pytest.fixture
def http(pipeline: Pipeline, telemetry: CollectorTelemetry) -> TestClient:
    return TestClient(create_otlp_http_app(HttpProtocolConfig(), otlp_ingest(pipeline, telemetry)))


@pytest.mark.parametrize("log_first", [True, False], ids=["log-before-span", "span-before-log"])
def test_genai_content_events_become_redacted_rows_of_their_span_in_either_order(
    client: Client, http: TestClient, telemetry: CollectorTelemetry, log_first: bool
) -> None:
    logs = _logs(*_content_events()).SerializeToString()
    posts = [("/v1/logs", logs), ("/v1/traces", _chat_span().SerializeToString())]
    for path, body in posts if log_first else reversed(posts):
        response = http.post(path, content=body, headers=PROTOBUF)
        assert response.status_code == 200, response.text
    assert ExportLogsServiceResponse.FromString(http.post("/v1/logs", content=logs, headers=PROTOBUF).content) == (
        ExportLogsServiceResponse()
    )  # a re-sent record replaces itself: no new row

    chat, choice, user = _rows(client)  # the events share a time: by name
    trace_id, span_id = TRACE_ID.hex(), SPAN_ID.hex()
    assert (chat["name"], chat["run_id"], chat["entry_type"], chat["input_tokens"]) == (
        "chat gpt-4.1-mini", trace_id, "prompt", 57
    )  # fmt: skip
    for event in (user, choice):
        # One run with the span, under it, never typed as a second prompt nor counting its tokens again.
        assert (event["run_id"], event["trace_id"], event["parent_span_id"]) == (trace_id, trace_id, span_id)
        assert (event["entry_type"], event["input_tokens"]) == ("span", 0)
    assert user["name"] == "gen_ai.user.message"
    assert json.loads(user["input_messages"]) == [{"content": "Refund A-1001, mail me at [EMAIL]", "role": "user"}]
    assert user["attributes"]["agentledger.log.event"] == "gen_ai.user.message"
    assert json.loads(choice["output_messages"]) == [{
        "index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "issue_refund", "arguments": '{"order_id":"A-1001"}'}}]},
    }]  # fmt: skip
    assert choice["attributes"]["gen_ai.provider.name"] == "openai"
    assert telemetry.value("agentledger_log_records_accepted_total") == 4
    assert telemetry.value("agentledger_log_records_received_total") == 4


def test_the_inference_details_event_over_json_carries_structured_messages(client: Client, http: TestClient) -> None:
    messages = AnyValue(array_value=ArrayValue(values=[_kvlist(
        role=_text("user"),
        parts=AnyValue(array_value=ArrayValue(values=[_kvlist(type=_text("text"), content=_text("hi"))])),
    )]))  # fmt: skip
    details = _record(
        "gen_ai.client.inference.operation.details", gen_ai__input__messages=messages,
        gen_ai__operation__name=_text("chat"), gen_ai__usage__input_tokens=AnyValue(int_value=5),
    )  # fmt: skip
    document = json_format.MessageToDict(_logs(details))
    record = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["traceId"], record["spanId"] = TRACE_ID.hex(), SPAN_ID.hex()  # OTLP JSON ids are hex

    response = http.post("/v1/logs", json=document)

    assert response.status_code == 200, response.text
    [row] = _rows(client)
    assert json.loads(row["input_messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert (row["entry_type"], row["input_tokens"], row["parent_span_id"]) == ("span", 0, SPAN_ID.hex())


def test_records_that_are_no_span_event_are_answered_as_rejected_and_counted(
    client: Client, http: TestClient, telemetry: CollectorTelemetry
) -> None:
    request = _logs(
        _record("app.started", _text("hello")),
        _record("gen_ai.user.message", _text("orphan"), trace_id=b"", span_id=b""),
        _record("gen_ai.user.message", _text("kept")),
    )
    response = ExportLogsServiceResponse.FromString(
        http.post("/v1/logs", content=request.SerializeToString(), headers=PROTOBUF).content
    )
    assert response.partial_success.rejected_log_records == 2
    assert response.partial_success.error_message == (
        "1 log record(s) dropped: they carry no trace and span id, so they belong to no span; 1 log record(s)"
        " dropped: they are not GenAI events (event name gen_ai.*); agentledger stores no other logs"
    )
    assert [json.loads(row["input_messages"]) for row in _rows(client)] == [[{"content": "kept", "role": "user"}]]
    assert telemetry.value("agentledger_log_records_dropped_total", ("reason", "not_genai_event")) == 1
    assert telemetry.value("agentledger_log_records_dropped_total", ("reason", "no_span_context")) == 1


def _metrics(points: int) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metric = Metric(name="gen_ai.client.token.usage", gauge=Gauge(data_points=[
        NumberDataPoint(time_unix_nano=START_NS, as_int=index) for index in range(points)]))  # fmt: skip
    request.resource_metrics.add().scope_metrics.add().metrics.append(metric)
    return request


def test_metrics_are_answered_as_rejected_with_why_and_counted(http: TestClient, telemetry: CollectorTelemetry) -> None:
    response = http.post("/v1/metrics", content=_metrics(3).SerializeToString(), headers=PROTOBUF)

    assert response.status_code == 200
    answer = ExportMetricsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_data_points == 3
    assert answer.partial_success.error_message == (
        "3 data point(s) dropped: agentledger stores traces and GenAI log events, not metrics; send metrics to a"
        " metrics backend"
    )
    assert http.post("/v1/metrics", json={"resourceMetrics": []}).json() == {}
    assert telemetry.value("agentledger_metric_points_dropped_total") == 3


def test_unknown_paths_get_a_404_that_says_what_is_served_and_are_counted(
    http: TestClient, telemetry: CollectorTelemetry
) -> None:
    response = http.post("/v1/profiles", content=b"x", headers=PROTOBUF)

    assert response.status_code == 404
    assert response.json() == {
        "detail": "no such endpoint '/v1/profiles': the OTLP receiver serves POST /v1/traces, /v1/logs and"
        " /v1/metrics, GET /metrics and /healthz"
    }
    assert telemetry.value("agentledger_unknown_paths_total", ("method", "POST")) == 1
    assert 'agentledger_unknown_paths_total{method="POST"} 1' in http.get("/metrics").text


def test_grpc_logs_and_metrics_services(client: Client, pipeline: Pipeline, telemetry: CollectorTelemetry) -> None:
    protocol = GrpcProtocolConfig(endpoint=f"127.0.0.1:{free_port()}")
    server = start_grpc_server(protocol, otlp_ingest(pipeline, telemetry))
    try:
        with grpc.insecure_channel(protocol.endpoint) as channel:
            logs = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
            metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
            logged = logs.Export(_logs(*_content_events(), _record("app.started")), timeout=30)
            measured = metrics.Export(_metrics(2), timeout=30)
    finally:
        server.stop(0)

    assert logged.partial_success.rejected_log_records == 1
    assert measured.partial_success.rejected_data_points == 2
    assert [row["name"] for row in _rows(client)] == ["gen_ai.choice", "gen_ai.user.message"]
