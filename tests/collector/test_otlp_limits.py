"""Requests that would amplify memory, carry impossible times, can never fit the spool, or forge the
collector's own keys: each gets a precise answer (413 / RESOURCE_EXHAUSTED, partial success), counted."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from google.rpc import status_pb2
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from agentledger.collector.config import GrpcProtocolConfig, HttpProtocolConfig, LimitsConfig, MiB, SpoolConfig
from agentledger.collector.pipeline import Pipeline
from agentledger.collector.receivers.otlp_decode import (
    MAX_TIME_UNIX_NANO,
    DecodedSizeExceeded,
    Identity,
    decode_request,
)
from agentledger.collector.receivers.otlp_grpc import start_grpc_server
from agentledger.collector.receivers.otlp_http import create_otlp_http_app
from agentledger.collector.spool import Spool
from agentledger.collector.telemetry import CollectorTelemetry
from agentledger.schema import conventions as conv
from tests.conftest import RunningService, direct_pipeline, free_port, otlp_ingest

PROTOBUF = {"Content-Type": "application/x-protobuf"}
START = 1_700_000_000_000_000_000


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(index: int, start: int = START, end: int | None = None, attributes: dict[str, str] | None = None) -> Span:
    return Span(
        trace_id=(index + 1).to_bytes(16, "big"),
        span_id=(index + 1).to_bytes(8, "big"),
        name=f"span-{index}",
        start_time_unix_nano=start,
        end_time_unix_nano=start + 100 if end is None else end,
        attributes=[_kv(key, value) for key, value in (attributes or {}).items()],
    )


def _request(spans: list[Span], resource: list[KeyValue] | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=Resource(attributes=resource or []), scope_spans=[ScopeSpans(spans=spans)])
        ]
    )


def _amplifying_request() -> ExportTraceServiceRequest:
    """The testers' case: 256 resource attributes of 16 KB (4 MB once) shared by 64 spans (256 MB decoded)."""
    resource = [_kv(f"res.{index}", f"{index:04d}" * 4096) for index in range(256)]
    return _request([_span(index) for index in range(64)], resource)


@pytest.fixture
def telemetry() -> CollectorTelemetry:
    return CollectorTelemetry()


@pytest.fixture
def http(client: Client, telemetry: CollectorTelemetry) -> TestClient:
    protocol = HttpProtocolConfig(max_request_bytes=32 * MiB)
    return TestClient(create_otlp_http_app(protocol, otlp_ingest(direct_pipeline(client), telemetry)))


# --- 5. memory amplification ------------------------------------------------------------------------------


def test_a_request_amplified_by_its_resource_is_413_through_the_running_collector(service: RunningService) -> None:
    body = _amplifying_request().SerializeToString()
    assert len(body) < 5 * MiB

    response = httpx.post(f"{service.collector_url}/v1/traces", content=body, headers=PROTOBUF, timeout=60)

    assert response.status_code == 413
    assert "retry-after" not in response.headers
    message = status_pb2.Status.FromString(response.content).message
    assert message.startswith("request refused, too large to accept: the request would expand to about ")
    assert "receivers.otlp.limits.max_decoded_bytes_per_request (67108864)" in message
    metrics = httpx.get(f"{service.collector_url}/metrics", timeout=10).text
    assert 'agentledger_spans_refused_total{reason="decoded_size_budget"} 64' in metrics
    assert 'agentledger_requests_total{http="413"} 1' in metrics


def test_the_sdk_exporter_gets_413_for_an_amplifying_resource_and_does_not_retry(service: RunningService) -> None:
    memory = InMemorySpanExporter()
    resource = SdkResource.create({f"res.{index}": f"{index:04d}" * 4096 for index in range(256)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for index in range(64):
        provider.get_tracer("t").start_span(f"span-{index}").end()
    exporter = OTLPSpanExporter(endpoint=f"{service.collector_url}/v1/traces")

    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.FAILURE

    metrics = httpx.get(f"{service.collector_url}/metrics", timeout=10).text
    # One request: the SDK retries 429 and 503, never 413.
    assert 'agentledger_requests_total{http="413"} 1' in metrics
    assert 'agentledger_spans_refused_total{reason="decoded_size_budget"} 64' in metrics


def test_the_budget_refuses_before_any_span_is_materialised() -> None:
    request = _amplifying_request()
    allocated = pa.total_allocated_bytes()

    with pytest.raises(DecodedSizeExceeded) as refused:
        decode_request(request, Identity("t"))

    assert refused.value.spans == 64
    # Not one Arrow buffer was built: the 256 MB expansion was estimated, never materialised.
    assert pa.total_allocated_bytes() - allocated < 64 * 1024


def test_the_budget_counts_resource_copies_and_is_configurable() -> None:
    resource = [_kv("res.big", "r" * 10_000)]
    request = _request([_span(index) for index in range(20)], resource)

    assert (
        decode_request(request, Identity("t"), LimitsConfig(max_decoded_bytes_per_request=1 * MiB)).batch.num_rows == 20
    )
    with pytest.raises(DecodedSizeExceeded):
        decode_request(request, Identity("t"), LimitsConfig(max_decoded_bytes_per_request=150_000))


def test_each_span_gets_its_own_resources_attributes_decoded_once_per_resource() -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", "svc-a"), _kv(conv.GEN_AI_AGENT_ID, "agent-a")]),
                scope_spans=[ScopeSpans(spans=[_span(0), _span(1, attributes={conv.GEN_AI_AGENT_ID: "own"})]),
                             ScopeSpans(spans=[_span(2)])],
            ),
            ResourceSpans(resource=Resource(attributes=[_kv("service.name", "svc-b")]),
                          scope_spans=[ScopeSpans(spans=[_span(3)])]),
            ResourceSpans(resource=Resource(), scope_spans=[ScopeSpans(spans=[_span(4)])]),
        ]
    )  # fmt: skip

    rows = decode_request(request, Identity("t")).batch.to_pylist()

    assert [(row["span_id"][-2:], row["service_name"], row["agent_id"]) for row in rows] == [
        ("01", "svc-a", "agent-a"),
        ("02", "svc-a", "own"),  # the span's own attribute wins over its resource's
        ("03", "svc-a", "agent-a"),
        ("04", "svc-b", ""),
        ("05", "", ""),
    ]
    assert [dict(row["resource_attributes"]) for row in rows] == [
        {"service.name": "svc-a", conv.GEN_AI_AGENT_ID: "agent-a"}
    ] * 3 + [{"service.name": "svc-b"}, {}]


# --- 6. impossible timestamps, requests that can never fit ---------------------------------------------------


def test_impossible_times_are_rejected_per_span_as_partial_success(
    http: TestClient, client: Client, telemetry: CollectorTelemetry
) -> None:
    spans = [
        _span(0),
        _span(1, start=2**63),
        _span(2, start=2**64 - 1, end=2**64 - 1),
        _span(3, end=2**63 + 5),
        _span(4, start=0, end=START),
        _span(5, start=MAX_TIME_UNIX_NANO, end=MAX_TIME_UNIX_NANO),
        _span(6, end=START - 1),
        _span(7, end=0),
    ]
    spans[0].events.append(Span.Event(name="late", time_unix_nano=2**63))

    response = http.post("/v1/traces", content=_request(spans).SerializeToString(), headers=PROTOBUF)

    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 5
    assert partial.error_message == (
        "4 span(s) rejected: a timestamp is past 2262-04-11T23:47:16.854775807Z, the latest that can be stored; "
        "1 span(s) rejected: start_time_unix_nano is unset (0)"
    )
    assert telemetry.value("agentledger_spans_rejected_total", ("reason", "invalid_timestamp")) == 5
    stored = client.query(
        "SELECT name, toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time), duration_ns, truncated"
        " FROM spans ORDER BY name"
    ).result_rows
    assert stored == [
        ("span-5", MAX_TIME_UNIX_NANO, MAX_TIME_UNIX_NANO, 0, []),
        # An end before the start (or unset) is stored as a zero-length span, marked and counted.
        ("span-6", START, START, 0, ["end_time"]),
        ("span-7", START, START, 0, ["end_time"]),
    ]
    assert telemetry.value("agentledger_spans_truncated_total", ("what", "end_time")) == 2


def _spool_pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline([], [], spool=Spool(tmp_path / "spool", SpoolConfig(max_bytes=1 * MiB)))


def _bigger_than_the_spool() -> bytes:
    # ~2.5 MB of incompressible attribute values: under every per-request limit, over a 1 MiB spool.
    return _request(
        [_span(index, attributes={"payload": f"{index:08x}" * 1000}) for index in range(300)]
    ).SerializeToString()


def test_a_request_bigger_than_the_whole_spool_is_413_not_429(tmp_path: Path, telemetry: CollectorTelemetry) -> None:
    protocol = HttpProtocolConfig(max_request_bytes=32 * MiB)
    http = TestClient(create_otlp_http_app(protocol, otlp_ingest(_spool_pipeline(tmp_path), telemetry)))

    response = http.post("/v1/traces", content=_bigger_than_the_spool(), headers=PROTOBUF)
    small = http.post("/v1/traces", content=_request([_span(0)]).SerializeToString(), headers=PROTOBUF)

    assert response.status_code == 413
    assert "retry-after" not in response.headers
    message = status_pb2.Status.FromString(response.content).message
    assert "more than the whole spool holds (spool.max_bytes 1048576); send fewer spans per request" in message
    assert telemetry.value("agentledger_spans_refused_total", ("reason", "RequestTooLarge")) == 300
    assert small.status_code == 200


def test_a_refused_request_leaves_none_of_its_batch_alive(tmp_path: Path) -> None:
    # Refusals must not travel back to the event loop as exceptions: those sit in a reference cycle with
    # the request's buffers until a garbage collection, so hostile senders grow the collector's memory.
    protocol = HttpProtocolConfig(max_request_bytes=32 * MiB)
    http = TestClient(create_otlp_http_app(protocol, otlp_ingest(_spool_pipeline(tmp_path))))
    body = _bigger_than_the_spool()
    http.post("/v1/traces", content=body, headers=PROTOBUF)
    gc.collect()
    gc.disable()
    try:
        allocated = pa.total_allocated_bytes()
        statuses = [http.post("/v1/traces", content=body, headers=PROTOBUF).status_code for _ in range(3)]
        still_allocated = pa.total_allocated_bytes() - allocated
    finally:
        gc.enable()

    assert statuses == [413, 413, 413]
    assert still_allocated < 256 * 1024  # each refused batch took ~2.5 MB of Arrow memory


@pytest.fixture
def grpc_stub(tmp_path: Path, telemetry: CollectorTelemetry) -> Iterator[trace_service_pb2_grpc.TraceServiceStub]:
    protocol = GrpcProtocolConfig(endpoint=f"127.0.0.1:{free_port()}", max_request_bytes=32 * MiB)
    server = start_grpc_server(protocol, otlp_ingest(_spool_pipeline(tmp_path), telemetry))
    options = [("grpc.max_send_message_length", 32 * MiB)]
    with grpc.insecure_channel(protocol.endpoint, options=options) as channel:
        yield trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
    server.stop(0)


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        (_bigger_than_the_spool, "more than the whole spool holds"),
        (lambda: _amplifying_request().SerializeToString(), "max_decoded_bytes_per_request"),
    ],
)
def test_grpc_answers_resource_exhausted_without_retry_info_when_a_request_can_never_fit(
    grpc_stub: trace_service_pb2_grpc.TraceServiceStub, request_body: object, expected: str
) -> None:
    request = ExportTraceServiceRequest.FromString(request_body())  # type: ignore[operator]

    with pytest.raises(grpc.RpcError) as refused:
        grpc_stub.Export(request, timeout=60)

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert expected in refused.value.details()
    assert rpc_status.from_call(refused.value) is None  # no RetryInfo detail: retrying cannot help


def test_grpc_rejects_impossible_times_as_partial_success(grpc_stub: trace_service_pb2_grpc.TraceServiceStub) -> None:
    response = grpc_stub.Export(_request([_span(0), _span(1, start=2**63)]), timeout=30)

    assert response.partial_success.rejected_spans == 1
    assert "2262-04-11" in response.partial_success.error_message


# --- 7. reserved identity keys ------------------------------------------------------------------------------


def test_reserved_keys_are_stripped_from_span_resource_and_scope_attributes_and_counted(
    http: TestClient, client: Client, telemetry: CollectorTelemetry
) -> None:
    resource = Resource(
        attributes=[
            _kv(conv.AGENTLEDGER_TENANT_ID, "forged"),
            _kv("service.name", "svc"),
            _kv(conv.AGENTLEDGER_REDACTION_SUMMARY, '{"email":0}'),
        ]
    )
    scope = InstrumentationScope(name="s", attributes=[_kv(conv.AGENTLEDGER_TENANT_ID, "x")])
    span = _span(0, attributes={conv.AGENTLEDGER_TENANT_ID: "forged", "app.k": "v"})
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=[span])])]
    )

    assert http.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF).status_code == 200

    tenant, attributes, resource = client.query(
        "SELECT tenant, attributes, resource_attributes FROM spans"
    ).result_rows[0]
    assert tenant == "default"
    assert attributes == {"app.k": "v"}
    assert resource == {"service.name": "svc"}
    assert telemetry.value("agentledger_reserved_attributes_stripped_total", ("where", "resource")) == 2
    assert telemetry.value("agentledger_reserved_attributes_stripped_total", ("where", "span")) == 1
    assert telemetry.value("agentledger_reserved_attributes_stripped_total", ("where", "scope")) == 1
