"""The normaliser's per-family tables (OpenInference, OTel GenAI current and deprecated, OpenLLMetry /
traceloop, Logfire / pydantic-ai) and its run grouping, over spans the real OTel SDK made and the receiver
decoded. Each test reproduces one finding of issue 14."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from agentledger.collector.processors.normalize import NormalizeConfig, NormalizeProcessor
from agentledger.collector.receivers.otlp_decode import Identity, decode_request


def _spans(build: Callable[[Tracer], None], service: str = "svc") -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("third-party"))
    return list(exporter.get_finished_spans())


def _rows(
    spans: Sequence[ReadableSpan], config: NormalizeConfig | None = None, tenant: str = "acme"
) -> list[dict[str, Any]]:
    batch = decode_request(encode_spans(list(spans)), Identity(tenant)).batch
    rows = NormalizeProcessor(config).process(batch).to_pylist()
    for row in rows:
        row["attributes"] = dict(row["attributes"])
    return sorted(rows, key=lambda row: row["start_time"])


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_the_same_thread_id_in_two_services_is_two_conversations_and_each_turn_its_own_run() -> None:
    # LangGraph's docs use thread_id "1"; openinference-langchain reports it as session.id.
    def turn(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "LangGraph", attributes={"openinference.span.kind": "CHAIN", "session.id": "1"}
        ):
            with tracer.start_as_current_span(
                "ChatOpenAI", attributes={"openinference.span.kind": "LLM", "session.id": "1"}
            ):
                pass

    billing = _rows(_spans(turn, "billing") + _spans(turn, "billing"))
    support = _rows(_spans(turn, "support"))

    assert {row["conversation_id"] for row in billing} == {"acme/billing/1"}
    assert {row["conversation_id"] for row in support} == {"acme/support/1"}
    # Two turns are two runs (their traces), never the session; no run is shared across services.
    assert len({row["run_id"] for row in billing}) == 2
    assert {row["run_id"] for row in billing} == {row["trace_id"] for row in billing}
    assert not {row["run_id"] for row in billing} & {row["run_id"] for row in support}


def test_conversation_namespace_escapes_the_separator_and_the_emitters_mirror_is_no_conversation() -> None:
    def build(tracer: Tracer) -> None:
        tracer.start_span("a", attributes={"gen_ai.conversation.id": "c/1"}).end()
        # The emitter copies its run id into session.id for OpenInference; that is the run, not a conversation.
        tracer.start_span("b", attributes={"agent.run.id": "run_e", "session.id": "run_e"}).end()

    rows = _by_name(_rows(_spans(build, "a/b"), tenant="t/1"))
    assert rows["a"]["conversation_id"] == "t%2F1/a%2Fb/c/1"
    assert (rows["b"]["run_id"], rows["b"]["conversation_id"]) == ("run_e", "")


def test_spans_of_one_trace_in_separate_batches_get_one_run_without_a_parent_in_the_batch() -> None:
    # openai-v2 style: chat spans under one app span, exported in batches that split the trace.
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("handle request"):
            for turn in range(5):
                tracer.start_span(f"chat gpt-{turn}", attributes={"gen_ai.operation.name": "chat"}).end()

    spans = _spans(build)
    run_ids = {row["run_id"] for span in spans for row in _rows([span])}  # one span per batch
    assert run_ids == {format(spans[0].context.trace_id, "032x")}


def test_run_id_precedence_is_configurable_and_validated() -> None:
    def build(tracer: Tracer) -> None:
        tracer.start_span("a", attributes={"session.id": "s", "app.run": "r9"}).end()

    spans = _spans(build)
    assert _rows(spans)[0]["run_id"] == format(spans[0].context.trace_id, "032x")
    assert _rows(spans, NormalizeConfig(run_id_from=("app.run", "trace_id")))[0]["run_id"] == "r9"
    assert _rows(spans, NormalizeConfig(conversation_id_from=()))[0]["conversation_id"] == ""
    with pytest.raises(ValidationError, match=r"processors\.normalize\.conversation_id_from lists a source twice"):
        NormalizeConfig(conversation_id_from=("session.id", "session.id"))


def test_a_run_without_an_agent_name_takes_the_service_name() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("LangGraph", attributes={"openinference.span.kind": "CHAIN"}):
            tracer.start_span("ChatOpenAI", attributes={"openinference.span.kind": "LLM"}).end()
        with tracer.start_as_current_span("invoke_agent", attributes={"gen_ai.operation.name": "invoke_agent"}):
            pass
        tracer.start_span(
            "named", attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "own"}
        ).end()

    rows = _by_name(_rows(_spans(build, "support-bot")))
    assert {name: row["agent_name"] for name, row in rows.items()} == {
        "LangGraph": "support-bot",  # the trace's root
        "ChatOpenAI": "",
        "invoke_agent": "support-bot",
        "named": "own",
    }
    assert not NormalizeConfig(agent_name_from_service=False).agent_name_from_service


def test_traceloop_span_kinds_and_entity_input_output_are_typed() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("refund.workflow", attributes={
            "traceloop.span.kind": "workflow", "traceloop.entity.name": "refund",
        }):  # fmt: skip
            with tracer.start_as_current_span("issue_refund.tool", attributes={
                "traceloop.span.kind": "tool", "traceloop.entity.name": "issue_refund",
                "traceloop.entity.input": '{"inputs": {"order_id": "A-1"}}',
                "traceloop.entity.output": '{"outputs": "refunded"}',
            }):  # fmt: skip
                pass
            tracer.start_span("openai.chat", attributes={
                "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-x",
                "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "refund A-1",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.tool_calls.0.id": "call_1",
                "gen_ai.completion.0.tool_calls.0.name": "issue_refund",
                "gen_ai.completion.0.tool_calls.0.arguments": '{"order_id": "A-1"}',
                "gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": 3,
            }).end()  # fmt: skip

    rows = _by_name(_rows(_spans(build)))
    workflow, tool, chat = rows["refund.workflow"], rows["issue_refund.tool"], rows["openai.chat"]
    assert (workflow["entry_type"], workflow["agent_name"]) == ("run", "refund")
    assert (tool["entry_type"], tool["tool_name"], tool["tool_arguments"], tool["tool_result"]) == (
        "tool_call", "issue_refund", '{"inputs": {"order_id": "A-1"}}', '{"outputs": "refunded"}',
    )  # fmt: skip
    assert (tool["input_value"], tool["output_value"]) == ('{"inputs": {"order_id": "A-1"}}', '{"outputs": "refunded"}')
    assert (chat["entry_type"], chat["model"], chat["input_tokens"], chat["output_tokens"]) == (
        "prompt",
        "gpt-x",
        11,
        3,
    )
    assert json.loads(chat["input_messages"]) == [{"role": "user", "content": "refund A-1"}]
    assert json.loads(chat["output_messages"]) == [{"role": "assistant", "tool_calls": [
        {"id": "call_1", "name": "issue_refund", "arguments": '{"order_id": "A-1"}'},
    ]}]  # fmt: skip
    assert not any(key.startswith("gen_ai.prompt.") for key in chat["attributes"])
    # The tool span names no call id; the model's tool call in its trace does.
    assert tool["tool_call_id"] == "call_1"
    # The deprecated provider key is answered under its current name.
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"


def test_openinference_tool_calls_are_nested_objects_and_tool_spans_get_the_call_id() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("agent", attributes={"openinference.span.kind": "AGENT"}):
            tracer.start_span("ChatCompletion", attributes={
                "openinference.span.kind": "LLM",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_7",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": 1}',
                "llm.input_messages.0.message.role": "tool",
                "llm.input_messages.0.message.tool_call_id": "call_6",
                "llm.input_messages.0.message.contents.0.message_content.type": "text",
                "llm.input_messages.0.message.contents.0.message_content.text": "done",
            }).end()  # fmt: skip
            tracer.start_span("lookup", attributes={
                "openinference.span.kind": "TOOL", "tool.name": "lookup", "input.value": '{"q": 1}',
            }).end()  # fmt: skip

    rows = _by_name(_rows(_spans(build)))
    assert json.loads(rows["ChatCompletion"]["output_messages"]) == [{
        "role": "assistant",
        "tool_calls": [{"id": "call_7", "function": {"name": "lookup", "arguments": '{"q": 1}'}}],
    }]  # fmt: skip
    assert json.loads(rows["ChatCompletion"]["input_messages"]) == [
        {"role": "tool", "tool_call_id": "call_6", "contents": [{"type": "text", "text": "done"}]}
    ]
    assert rows["lookup"]["tool_call_id"] == "call_7"


def test_logfire_templates_become_the_rendered_message_and_pydantic_ai_tools_are_typed() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("{agent_name} run", attributes={
            "logfire.msg_template": "{agent_name} run", "logfire.msg": "support_agent run",
            "agent_name": "support_agent",
        }):  # fmt: skip
            tracer.start_span("Chat Completion with {request_data[model]!r}", attributes={
                "logfire.msg_template": "Chat Completion with {request_data[model]!r}",
                "gen_ai.request.model": "gpt-x", "gen_ai.operation.name": "chat",
            }).end()  # fmt: skip
            tracer.start_span("running tool", attributes={
                "logfire.msg_template": "running tool: {gen_ai.tool.name}", "logfire.msg": "running tool: lookup",
                "gen_ai.tool.name": "lookup", "gen_ai.tool.call.id": "call_3",
                "tool_arguments": '{"q": 1}', "tool_response": "42",
            }).end()  # fmt: skip

    rows = _rows(_spans(build))
    assert [(row["name"], row["entry_type"]) for row in rows] == [
        ("support_agent run", "run"), ("chat gpt-x", "prompt"), ("running tool", "tool_call"),
    ]  # fmt: skip
    assert rows[0]["agent_name"] == "support_agent"
    assert (rows[2]["tool_call_id"], rows[2]["tool_arguments"], rows[2]["tool_result"]) == ("call_3", '{"q": 1}', "42")


def test_genai_structured_and_string_messages_both_fill_the_content_columns() -> None:
    def build(tracer: Tracer) -> None:
        tracer.start_span("chat m", attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
            "gen_ai.tool.definitions": '[{"name":"lookup"}]',
        }).end()  # fmt: skip

    row = _rows(_spans(build))[0]
    assert json.loads(row["input_messages"]) == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert row["attributes"]["gen_ai.tool.definitions"] == '[{"name":"lookup"}]'


def test_openinference_spans_inside_an_emitter_run_take_the_run_from_their_metadata_in_any_batch() -> None:
    def build(tracer: Tracer) -> None:
        metadata = json.dumps({"agent.run.id": "run_m", "user": "x"})
        tracer.start_span("ChatCompletion", attributes={"metadata": metadata, "session.id": "run_m"}).end()

    (row,) = _rows(_spans(build))
    assert (row["run_id"], row["conversation_id"]) == ("run_m", "")


def test_deprecated_genai_content_span_events_fill_the_content_columns() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat old", attributes={"gen_ai.operation.name": "chat"}) as span:
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": '[{"role": "user", "content": "hi"}]'})
            completion = '[{"role": "assistant", "content": "yo"}]'
            span.add_event("gen_ai.content.completion", {"gen_ai.completion": completion})
        with tracer.start_as_current_span("chat events", attributes={"gen_ai.operation.name": "chat"}) as span:
            span.add_event("gen_ai.system.message", {"gen_ai.system": "openai", "content": "be brief"})
            span.add_event("gen_ai.user.message", {"content": "refund A-1"})
            span.add_event(
                "gen_ai.choice",
                {"index": 0, "finish_reason": "stop", "message": '{"role": "assistant", "content": "done"}'},
            )

    rows = _by_name(_rows(_spans(build)))
    old, events = rows["chat old"], rows["chat events"]
    assert (json.loads(old["input_messages"]), json.loads(old["output_messages"])) == (
        [{"role": "user", "content": "hi"}], [{"role": "assistant", "content": "yo"}],
    )  # fmt: skip
    assert json.loads(events["input_messages"]) == [
        {"content": "be brief", "role": "system"}, {"content": "refund A-1", "role": "user"},
    ]  # fmt: skip
    assert json.loads(events["output_messages"]) == [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "done"}}
    ]
