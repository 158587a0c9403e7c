"""Decoding OTLP requests built by the real SDK encoder into the columnar span batch."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.schema import conventions as conv
from agentledger.schema.span_columns import SPAN_SCHEMA


def _request(build: object) -> object:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", conv.GEN_AI_AGENT_ID: "agent-r"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("scope-x", "1.2"))  # type: ignore[operator]
    return encode_spans(exporter.get_finished_spans())


def test_promoted_attributes_go_to_typed_columns_and_the_rest_to_the_map() -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span(
            "chat m",
            attributes={
                conv.AGENT_RUN_ID: "run_1",
                conv.GEN_AI_OPERATION_NAME: "chat",
                conv.GEN_AI_USAGE_INPUT_TOKENS: 42,
                conv.GEN_AI_INPUT_MESSAGES: "hello",
                conv.AGENTLEDGER_TENANT_ID: "forged-tenant",
                "custom.flag": True,
                "custom.list": ["a", "b"],
            },
        ) as span:
            span.add_event("retry", {"attempt": 2})
            span.set_status(Status(StatusCode.ERROR, "boom"))

    decoded = decode_request(_request(build), Identity("acme"))  # type: ignore[arg-type]
    row = decoded.batch.to_pylist()[0]

    assert decoded.batch.schema.equals(SPAN_SCHEMA)
    assert decoded.rejected_spans == 0
    assert row["tenant"] == "acme"
    assert row["run_id"] == "run_1"
    assert row["entry_type"] == "prompt"
    assert row["operation"] == "chat"
    assert row["input_tokens"] == 42
    assert row["input_messages"] == "hello"
    assert row["agent_id"] == "agent-r"  # from the resource
    assert row["service_name"] == "svc"
    assert (row["scope_name"], row["scope_version"]) == ("scope-x", "1.2")
    assert (row["status_code"], row["status_message"]) == ("ERROR", "boom")
    assert row["kind"] == "INTERNAL"
    assert dict(row["attributes"]) == {"custom.flag": "true", "custom.list": '["a","b"]'}
    assert row["event_names"] == ["retry"]
    assert [dict(m) for m in row["event_attributes"]] == [{"attempt": "2"}]
    assert row["duration_ns"] == row["end_time"].value - row["start_time"].value  # type: ignore[union-attr]


def test_span_type_comes_from_the_producer_then_genai_then_openinference() -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span(
            "a", attributes={conv.AGENTLEDGER_SPAN_TYPE: "approval", conv.GEN_AI_OPERATION_NAME: "execute_tool"}
        ):
            pass
        with tracer.start_as_current_span("b", attributes={conv.GEN_AI_OPERATION_NAME: "retrieval"}):
            pass
        with tracer.start_as_current_span("c", attributes={conv.OPENINFERENCE_SPAN_KIND: "TOOL"}):
            pass
        with tracer.start_as_current_span("d", attributes={conv.AGENTLEDGER_SPAN_TYPE: "bogus"}):
            pass

    decoded = decode_request(_request(build), Identity("t"))  # type: ignore[arg-type]

    assert decoded.batch.column("entry_type").to_pylist() == ["approval", "retrieval", "tool_call", "span"]


def test_spans_with_invalid_ids_are_counted_not_decoded() -> None:
    def build(tracer):  # type: ignore[no-untyped-def]
        for name in ("ok", "bad"):
            with tracer.start_as_current_span(name):
                pass

    request = _request(build)
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x00" * 16  # type: ignore[attr-defined]

    decoded = decode_request(request, Identity("t"))  # type: ignore[arg-type]

    assert decoded.batch.column("name").to_pylist() == ["ok"]
    assert decoded.rejected_spans == 1


def test_a_token_count_no_int64_holds_is_stored_as_unset_not_a_failed_request() -> None:
    """An integer column's value beyond Int64 (a double that is infinite, NaN or huge, a string of 20 digits)
    is treated as a value that is not a number (0, unset), as a non-numeric string already is; before, such a
    span failed its whole request with an unhandled OverflowError."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    values = [AnyValue(double_value=float("inf")), AnyValue(double_value=float("nan")), AnyValue(double_value=1e300),
              AnyValue(string_value="9" * 20), AnyValue(double_value=-(2.0**63)), AnyValue(double_value=1250.7),
              AnyValue(string_value="-42"), AnyValue(int_value=-(2**63))]  # fmt: skip
    spans = [
        Span(trace_id=bytes([1] * 16), span_id=bytes([2, 0, 0, 0, 0, 0, 0, index]), start_time_unix_nano=1,
             attributes=[KeyValue(key=conv.GEN_AI_USAGE_INPUT_TOKENS, value=value)])
        for index, value in enumerate(values)
    ]  # fmt: skip
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])

    decoded = decode_request(request, Identity("t"))

    assert decoded.rejected_spans == 0
    assert decoded.batch["input_tokens"].to_pylist() == [0, 0, 0, 0, -(2**63), 1250, -42, -(2**63)]
