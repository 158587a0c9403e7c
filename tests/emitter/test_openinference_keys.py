"""Every key the emitter sets outside our own and OTel GenAI's namespaces is an OpenInference key, checked
against OpenInference's own semantic-conventions package, so Phoenix reads each as it defines it."""

from __future__ import annotations

import re

from openinference.semconv.trace import (
    DocumentAttributes,
    MessageAttributes,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.emitter import (
    ContentCapture,
    Document,
    agent_run,
    approval,
    downstream_write,
    policy_decision,
    prompt,
    retrieval,
    tool_call,
)
from agentledger.schema import conventions as conv


def _constants(namespace: type) -> set[str]:
    return {value for name, value in vars(namespace).items() if name.isupper() and isinstance(value, str)}


def test_emitter_openinference_keys_and_kinds_are_openinference_s() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with agent_run("a", agent_name="n", task="t", capture=ContentCapture.FULL, tracer_provider=provider):
        with retrieval("kb", provenance=conv.InputProvenanceValues.RETRIEVED, query="q") as found:
            found.set_documents([Document("d", "c", 0.1)])
        with prompt("m", [{"role": "user", "content": "x"}]) as call:
            call.record_response([{"role": "assistant", "content": "y"}], input_tokens=1, output_tokens=2)
        with tool_call("t", access=conv.ToolAccessValues.WRITE, arguments={"a": 1}) as tool:
            tool.set_result("ok")
        with approval("t", arguments={"a": 1}) as request:
            request.decide(conv.ApprovalDecisionValues.APPROVED, "user:x")
        with policy_decision("p", conv.PolicyDecisionValues.ALLOW):
            pass
        with downstream_write("github", action=conv.WriteActionValues.CREATE, ref="r"):
            pass

    span_keys = _constants(SpanAttributes)
    flattened = {
        SpanAttributes.LLM_INPUT_MESSAGES: _constants(MessageAttributes),
        SpanAttributes.LLM_OUTPUT_MESSAGES: _constants(MessageAttributes),
        SpanAttributes.RETRIEVAL_DOCUMENTS: _constants(DocumentAttributes),
    }
    kinds = {kind.value for kind in OpenInferenceSpanKindValues}
    checked = 0
    for span in exporter.get_finished_spans():
        attributes = dict(span.attributes or {})
        assert attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] in kinds
        assert attributes[SpanAttributes.SESSION_ID] == attributes[conv.AGENT_RUN_ID]
        for key in attributes:
            if key.startswith(("agentledger.", "gen_ai.")) or key == conv.AGENT_RUN_ID:
                continue
            checked += 1
            match = re.fullmatch(r"(.+)\.[0-9]+\.(.+)", key)
            if match and match.group(1) in flattened:
                assert match.group(2) in flattened[match.group(1)], key
            else:
                assert key in span_keys, key
    assert checked == 44  # the count guards against a loop that checked nothing
