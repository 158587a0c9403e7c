"""The normalize processor over decoded batches: run ids and typed columns for spans of other conventions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from agentledger.collector.components import PROCESSORS
from agentledger.collector.config import PipelineSpec
from agentledger.collector.config_file import parse_collector_config
from agentledger.collector.processors.normalize import NormalizeConfig, NormalizeProcessor
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.emitter import ContentCapture, Document, agent_run, prompt, retrieval
from agentledger.schema.conventions import InputProvenanceValues
from agentledger.schema.span_columns import SPAN_SCHEMA


def _spans(build: Callable[[Tracer], None]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("third-party"))
    return list(exporter.get_finished_spans())


def _normalize(spans: Sequence[ReadableSpan], config: NormalizeConfig | None = None) -> list[dict[str, Any]]:
    batch = decode_request(encode_spans(list(spans)), Identity("default")).batch
    out = NormalizeProcessor(config).process(batch)
    assert out.schema == SPAN_SCHEMA
    rows = out.to_pylist()
    for row in rows:
        row["attributes"] = dict(row["attributes"])
    return sorted(rows, key=lambda row: row["start_time"])


def _pick(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    return {column: row[column] for column in columns}


def test_otel_genai_spans_get_a_configured_conversation_key_as_run_and_typed_entries() -> None:
    def build(tracer: Tracer) -> None:
        conversation = {"gen_ai.conversation.id": "conv_42"}
        with tracer.start_as_current_span(
            "invoke_agent helper", attributes={**conversation, "gen_ai.operation.name": "invoke_agent"}
        ):
            with tracer.start_as_current_span(
                "chat gpt-x",
                attributes={
                    **conversation,
                    "gen_ai.operation.name": "chat",
                    "gen_ai.response.model": "gpt-x-2026",
                    "gen_ai.usage.input_tokens": 12,
                    "gen_ai.usage.output_tokens": 3,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "execute_tool lookup",
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
            ):
                pass

    # Conversations group runs by default (test_normalize_families.py); a deployment may still say otherwise.
    rows = _normalize(_spans(build), NormalizeConfig(run_id_from=("gen_ai.conversation.id", "trace_id")))

    columns = ("name", "run_id", "entry_type", "model", "input_tokens", "output_tokens", "tool_name")
    assert [_pick(row, *columns) for row in rows] == [
        {"name": "invoke_agent helper", "run_id": "conv_42", "entry_type": "run", "model": "",
         "input_tokens": 0, "output_tokens": 0, "tool_name": ""},
        {"name": "chat gpt-x", "run_id": "conv_42", "entry_type": "prompt", "model": "gpt-x-2026",
         "input_tokens": 12, "output_tokens": 3, "tool_name": ""},
        # No conversation id of its own: it takes the run of its trace sibling.
        {"name": "execute_tool lookup", "run_id": "conv_42", "entry_type": "tool_call", "model": "",
         "input_tokens": 0, "output_tokens": 0, "tool_name": "lookup"},
    ]  # fmt: skip


def test_openinference_attributes_fill_typed_and_content_columns() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "ChatCompletion",
            attributes={
                "openinference.span.kind": "LLM",
                "session.id": "sess-9",
                "llm.model_name": "m-1",
                "llm.token_count.prompt": 57,
                "llm.token_count.completion": "not a number",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": 'say "hi"\n\x01',
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "be brief",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
                "llm.invocation_parameters": "{}",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "kb",
            attributes={
                "openinference.span.kind": "RETRIEVER",
                "retrieval.documents.0.document.id": "kb-1",
                "retrieval.documents.0.document.score": 0.5,
                "retrieval.documents.1.document.id": "kb-2",
                "retrieval.documents.1.document.score": "high",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "refund",
            attributes={
                "openinference.span.kind": "TOOL",
                "tool.name": "issue_refund",
                "input.value": '{"order_id": "A-1"}',
                "output.value": "done",
            },
        ):
            pass

    llm, retriever, tool = _normalize(_spans(build), NormalizeConfig(run_id_from=("session.id", "trace_id")))

    assert _pick(llm, "run_id", "entry_type", "model", "input_tokens", "output_tokens") == {
        "run_id": "sess-9", "entry_type": "prompt", "model": "m-1", "input_tokens": 57, "output_tokens": 0,
    }  # fmt: skip
    assert llm["input_messages"] == (
        '[{"role":"system","content":"be brief"},{"role":"user","content":"say \\"hi\\"\\n\\u0001"}]'
    )
    assert json.loads(llm["input_messages"])[1]["content"] == 'say "hi"\n\x01'
    assert llm["output_messages"] == '[{"tool_calls":[{"id":"call_1"}]}]'
    # The flattened content left the attributes Map; the rest stays.
    assert sorted(llm["attributes"]) == [
        "llm.invocation_parameters", "llm.model_name", "llm.token_count.completion", "llm.token_count.prompt",
        "openinference.span.kind", "session.id",
    ]  # fmt: skip

    assert retriever["entry_type"] == "retrieval"
    assert retriever["retrieval_documents"] == '[{"id":"kb-1","score":0.5},{"id":"kb-2","score":"high"}]'
    # No run id anywhere in its trace, no session: the trace id is its run.
    assert retriever["run_id"] == retriever["trace_id"]

    assert _pick(tool, "entry_type", "tool_name", "tool_arguments", "tool_result", "input_value") == {
        "entry_type": "tool_call", "tool_name": "issue_refund", "tool_arguments": '{"order_id": "A-1"}',
        "tool_result": "done", "input_value": '{"order_id": "A-1"}',
    }  # fmt: skip


def test_values_the_producer_set_are_never_overwritten() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "chat",
            attributes={
                "agent.run.id": "run_own",
                "session.id": "sess-other",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "requested",
                "llm.model_name": "other",
                "gen_ai.input.messages": '[{"role":"user"}]',
                "llm.input_messages.0.message.role": "system",
            },
        ):
            pass

    (row,) = _normalize(_spans(build))

    assert _pick(row, "run_id", "model", "input_messages") == {
        "run_id": "run_own", "model": "requested", "input_messages": '[{"role":"user"}]',
    }  # fmt: skip


def test_run_id_sources_follow_the_configured_order() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("a", attributes={"session.id": "sess", "gen_ai.conversation.id": "conv"}):
            pass

    spans = _spans(build)
    trace_id = f"{spans[0].context.trace_id:032x}"

    assert _normalize(spans)[0]["run_id"] == trace_id
    assert _normalize(spans, NormalizeConfig(run_id_from=("session.id", "trace_id")))[0]["run_id"] == "sess"
    by_conversation = NormalizeConfig(run_id_from=("gen_ai.conversation.id", "session.id"))
    assert _normalize(spans, by_conversation)[0]["run_id"] == "conv"
    assert _normalize(spans, NormalizeConfig(run_id_from=("trace_id",)))[0]["run_id"] == trace_id
    assert _normalize(spans, NormalizeConfig(run_id_from=()))[0]["run_id"] == ""


def test_trace_siblings_can_be_turned_off() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root", attributes={"agent.run.id": "run_x"}):
            with tracer.start_as_current_span("child"):
                pass

    config = NormalizeConfig(run_id_from=(), run_id_from_trace_siblings=False)
    assert {row["name"]: row["run_id"] for row in _normalize(_spans(build), config)} == {"root": "run_x", "child": ""}
    assert {row["name"]: row["run_id"] for row in _normalize(_spans(build))} == {"root": "run_x", "child": "run_x"}


def test_empty_batch_passes_through() -> None:
    empty = SPAN_SCHEMA.empty_table()
    assert NormalizeProcessor().process(empty) is empty


def test_config_is_frozen_and_refuses_unknown_keys_and_bad_sources() -> None:
    config = NormalizeConfig()
    with pytest.raises(ValidationError):
        config.run_id_from = ()
    with pytest.raises(ValidationError, match="extra"):
        NormalizeConfig(run_id_form=("x",))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="lists a source twice"):
        NormalizeConfig(run_id_from=("session.id", "session.id"))
    with pytest.raises(ValidationError, match="must not be empty"):
        NormalizeConfig(run_id_from=(" ",))


def test_normalize_is_registered_and_on_by_default() -> None:
    assert PipelineSpec().processors == ("normalize", "redaction")
    config = parse_collector_config({"processors": {"normalize": {"run_id_from": ["gen_ai.conversation.id"]}}})
    assert config.processors["normalize"] == NormalizeConfig(run_id_from=("gen_ai.conversation.id",))
    created = PROCESSORS["normalize"].create(config.processors["normalize"], None)
    assert isinstance(created, NormalizeProcessor) and created.config == config.processors["normalize"]


def test_a_batch_in_several_chunks_is_normalized_whole() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "a", attributes={"session.id": "s1", "llm.input_messages.0.message.role": "u"}
        ):
            pass
        with tracer.start_as_current_span("b", attributes={"session.id": "s2"}):
            pass

    batch = decode_request(encode_spans(_spans(build)), Identity("default")).batch
    chunked = pa.concat_tables([batch.slice(0, 1), batch.slice(1, 1)])

    out = NormalizeProcessor(NormalizeConfig(run_id_from=("session.id",))).process(chunked)

    assert out.column("run_id").to_pylist() == ["s1", "s2"]
    assert out.column("input_messages").to_pylist() == ['[{"role":"u"}]', ""]
    assert [dict(m) for m in out.column("attributes").to_pylist()] == [{"session.id": "s1"}, {"session.id": "s2"}]


def test_the_emitters_repeated_openinference_lists_leave_the_map_and_its_genai_content_stays() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with agent_run("a", run_id="run_e", capture=ContentCapture.FULL, tracer_provider=provider):
        with prompt("m", [{"role": "user", "content": "hi"}]):
            pass
        with retrieval("kb", provenance=InputProvenanceValues.INTERNAL) as found:
            found.set_documents([Document("kb-1", "text", 0.5)])

    rows = {row["name"]: row for row in _normalize(list(exporter.get_finished_spans()))}

    assert rows["chat m"]["input_messages"] == '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert rows["retrieval kb"]["retrieval_documents"] == '[{"id":"kb-1","score":0.5,"content":"text"}]'
    flattened = ("llm.input_messages.", "retrieval.documents.")
    assert [key for row in rows.values() for key in row["attributes"] if key.startswith(flattened)] == []
    # The emitter's other OpenInference keys stay, as they were sent.
    assert rows["chat m"]["attributes"]["llm.model_name"] == "m"


def test_spans_without_any_attribute_get_their_trace_as_run() -> None:
    (row,) = _normalize(_spans(lambda tracer: tracer.start_span("bare").end()))

    assert (row["run_id"], row["entry_type"], row["attributes"]) == (row["trace_id"], "span", {})


def test_an_absurd_list_index_stays_an_attribute_instead_of_failing_the_batch() -> None:
    key = "llm.input_messages.99999999999999999999.message.role"
    (row,) = _normalize(_spans(lambda tracer: tracer.start_span("x", attributes={key: "user"}).end()))

    assert (row["input_messages"], row["attributes"][key]) == ("", "user")
