"""The OpenInference conversion on its own: a third-party OpenInference span, normalised into our columns
(its flattened lists leave the attributes Map), comes back out with the same OpenInference keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.exporters.phoenix_convert import span_attributes, to_otlp_request
from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from tests.collector.span_batches import span_row

OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "session.id": "sess-42",
    "llm.model_name": "gpt-4o-mini",
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Be brief.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.content": "Refund order A-1?",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "issue_refund",
    "llm.token_count.prompt": 30,
    "llm.token_count.completion": 7,
}


def test_a_normalised_openinference_span_keeps_its_openinference_keys() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("openinference.instrumentation.openai").start_as_current_span(
        "ChatCompletion", attributes=OPENINFERENCE_LLM
    ):
        pass
    batch = NormalizeProcessor().process(
        decode_request(encode_spans(list(exporter.get_finished_spans())), Identity("default")).batch
    )
    assert "llm.input_messages.0.message.role" not in dict(batch.column("attributes")[0].as_py())

    [resource_spans] = to_otlp_request(batch, "review").resource_spans
    [scope_spans] = resource_spans.scope_spans
    [span] = scope_spans.spans
    attributes = {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}

    # Token counts come back as numbers although the attributes Map stored them as text.
    assert {key: attributes[key] for key in OPENINFERENCE_LLM} == OPENINFERENCE_LLM
    assert attributes["llm.token_count.total"] == 37
    # A session groups runs; the run is the trace.
    assert attributes["agent.run.id"] == span.trace_id.hex()
    assert {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes} == {
        "service.name": "support-bot",
        "openinference.project.name": "review",
    }
    assert (scope_spans.scope.name, span.name) == ("openinference.instrumentation.openai", "ChatCompletion")


ARGS = '{"order_id":"A-1"}'
_TOOL_CALL_TURN_EXPECTED = {
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "issue_refund",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order_id":"A-1"}',
}


@pytest.mark.parametrize(
    "output_messages",
    [
        # OTel GenAI (openai-v2, Logfire, pydantic-ai): typed parts, arguments as an object
        [{"role": "assistant", "parts": [
            {"type": "tool_call", "id": "call_1", "name": "issue_refund", "arguments": {"order_id": "A-1"}}]}],
        # OpenInference, as the normaliser nests it
        [{"role": "assistant", "tool_calls": [
            {"id": "call_1", "function": {"name": "issue_refund", "arguments": ARGS}}]}],
        # OpenLLMetry's legacy gen_ai.completion.N.tool_calls.M.*, nested
        [{"role": "assistant", "tool_calls": [{"id": "call_1", "name": "issue_refund", "arguments": ARGS}]}],
        # the deprecated gen_ai.choice event body
        [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "issue_refund", "arguments": ARGS}}]}}],
    ],
    ids=["otel-genai", "openinference", "openllmetry", "genai-choice-event"],
)  # fmt: skip
def test_tool_call_turns_reach_phoenix_as_openinference_tool_calls(output_messages: list[Any]) -> None:
    row = span_row(entry_type="prompt", output_messages=json.dumps(output_messages))
    attributes = span_attributes(row)
    assert {key: attributes[key] for key in _TOOL_CALL_TURN_EXPECTED} == _TOOL_CALL_TURN_EXPECTED


def test_tool_results_reach_phoenix_with_their_call_id() -> None:
    messages = [
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"ok": True}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "refunded"},
    ]
    attributes = span_attributes(span_row(entry_type="prompt", input_messages=json.dumps(messages)))
    assert {key: value for key, value in attributes.items() if key.startswith("llm.input_messages.")} == {
        "llm.input_messages.0.message.role": "tool",
        "llm.input_messages.0.message.tool_call_id": "call_1",
        "llm.input_messages.0.message.content": '{"ok":true}',
        "llm.input_messages.1.message.role": "tool",
        "llm.input_messages.1.message.tool_call_id": "call_2",
        "llm.input_messages.1.message.content": "refunded",
    }
