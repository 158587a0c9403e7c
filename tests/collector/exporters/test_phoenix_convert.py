"""The OpenInference conversion on its own: a third-party OpenInference span, normalised into our columns
(its flattened lists leave the attributes Map), comes back out with the same OpenInference keys."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collector.exporters.phoenix_convert import to_otlp_request
from agentledger.collector.processors.normalize import NormalizeProcessor
from agentledger.collector.receivers.otlp_decode import Identity, decode_request

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
    assert attributes["agent.run.id"] == "sess-42"
    assert {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes} == {
        "service.name": "support-bot",
        "openinference.project.name": "review",
    }
    assert (scope_spans.scope.name, span.name) == ("openinference.instrumentation.openai", "ChatCompletion")
