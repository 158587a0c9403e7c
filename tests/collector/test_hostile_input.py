"""Malformed and hostile OTLP input gets the documented response, never a crash or a silent drop."""

from __future__ import annotations

import json

import pytest
from clickhouse_connect.driver.client import Client
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from starlette.testclient import TestClient

from agentledger.collector.config import HttpProtocolConfig, LimitsConfig, OtlpReceiverConfig
from agentledger.collector.receivers.otlp_decode import TRUNCATION_MARKER, Identity, decode_request
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.receivers.otlp_payload import Encoding, PayloadError, parse_request
from agentledger.collector.telemetry import CollectorTelemetry
from tests.conftest import direct_pipeline, otlp_ingest

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _span(index: int, attributes: dict[str, str] | None = None) -> Span:
    return Span(
        trace_id=(index + 1).to_bytes(16, "big"),
        span_id=(index + 1).to_bytes(8, "big"),
        name=f"span-{index}",
        start_time_unix_nano=1_700_000_000_000_000_000 + index,
        end_time_unix_nano=1_700_000_000_000_000_100 + index,
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in (attributes or {}).items()],
    )


def _request(spans: list[Span]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])


@pytest.fixture
def telemetry() -> CollectorTelemetry:
    return CollectorTelemetry()


@pytest.fixture
def http(client: Client, telemetry: CollectorTelemetry) -> TestClient:
    protocol = HttpProtocolConfig(max_request_bytes=32 * 1024 * 1024)
    return TestClient(create_otlp_http_app(protocol, otlp_ingest(direct_pipeline(client), telemetry)))


def test_truncated_protobuf_is_400(http: TestClient) -> None:
    body = _request([_span(0, {"k": "v" * 100})]).SerializeToString()

    response = http.post("/v1/traces", content=body[:-10], headers=PROTOBUF)

    assert response.status_code == 400
    assert "not a valid ExportTraceServiceRequest" in status_pb2.Status.FromString(response.content).message


def test_invalid_utf8_in_a_string_field_is_400(http: TestClient) -> None:
    body = bytearray(_request([_span(0)]).SerializeToString())
    name_at = body.index(b"span-0")
    body[name_at : name_at + 2] = b"\xff\xfe"

    response = http.post("/v1/traces", content=bytes(body), headers=PROTOBUF)

    assert response.status_code == 400


def test_json_with_wrong_types_is_400(http: TestClient) -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00" * 16, "spanId": "01" * 8, "name": 7,
                                                          "startTimeUnixNano": {"not": "a number"}}]}]}]}  # fmt: skip

    response = http.post("/v1/traces", content=json.dumps(body), headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["message"].startswith("body is not a valid OTLP JSON trace request")


def test_a_10_mb_attribute_is_stored_truncated_with_a_marker_and_counted(
    http: TestClient, client: Client, telemetry: CollectorTelemetry
) -> None:
    body = _request([_span(0, {"huge": "a" * (10 * 1024 * 1024), "input.value": "b" * (10 * 1024 * 1024)})])

    response = http.post("/v1/traces", content=body.SerializeToString(), headers=PROTOBUF)

    assert response.status_code == 200
    huge, content, truncated = client.query("SELECT attributes['huge'], input_value, truncated FROM spans").result_rows[
        0
    ]
    limits = LimitsConfig()
    assert huge.endswith(TRUNCATION_MARKER) and len(huge.encode()) == limits.max_attribute_value_bytes
    assert content.endswith(TRUNCATION_MARKER) and len(content.encode()) == limits.max_content_bytes
    assert truncated == ["attribute_value", "content"]
    assert telemetry.value("agentledger_spans_truncated_total", ("what", "content")) == 1


def test_a_25k_span_request_keeps_the_first_10k_and_rejects_the_rest_as_partial_success(
    http: TestClient, client: Client, telemetry: CollectorTelemetry
) -> None:
    assert LimitsConfig().max_spans_per_request == 10_000
    body = _request([_span(index) for index in range(25_000)]).SerializeToString()

    response = http.post("/v1/traces", content=body, headers=PROTOBUF)

    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 15_000
    assert partial.error_message == "15000 span(s) rejected: a request may carry at most 10000"
    assert int(client.command("SELECT count() FROM spans")) == 10_000
    assert telemetry.value("agentledger_spans_rejected_total", ("reason", "invalid_or_over_limit")) == 15_000


def test_too_many_attributes_events_and_links_are_cut_and_recorded() -> None:
    span = _span(0, {f"k{i}": "v" for i in range(300)})
    span.events.extend(Span.Event(name=f"e{i}", time_unix_nano=1) for i in range(300))
    span.links.extend(Span.Link(trace_id=b"\x01" * 16, span_id=b"\x02" * 8) for _ in range(200))

    decoded = decode_request(_request([span]), Identity("t"))
    row = decoded.batch.to_pylist()[0]

    assert len(row["attributes"]) == 256
    assert len(row["event_names"]) == 256
    assert len(row["link_span_ids"]) == 128
    assert row["truncated"] == ["attributes", "events", "links"]
    assert decoded.truncated == {"attributes": 1, "events": 1, "links": 1}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzzed_protobuf_bodies_are_either_refused_cleanly_or_decoded(data: bytes) -> None:
    try:
        request = parse_request(data, Encoding.PROTOBUF)
    except PayloadError:
        return
    decoded = decode_request(request, Identity("t"), OtlpReceiverConfig().limits)
    assert decoded.batch.num_rows + decoded.rejected_spans >= 0


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children,
                                                                                        max_size=4),
                    max_leaves=20))  # fmt: skip
def test_fuzzed_json_bodies_are_either_refused_cleanly_or_decoded(document: object) -> None:
    wrapped = {"resourceSpans": [{"scopeSpans": [{"spans": [document]}]}]}
    for body in (json.dumps(document).encode(), json.dumps(wrapped).encode()):
        try:
            request = parse_request(body, Encoding.JSON)
        except PayloadError:
            continue
        decode_request(request, Identity("t"))
