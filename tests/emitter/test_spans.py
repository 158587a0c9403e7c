"""The emitter's helpers with the real OTel SDK and an in-memory exporter: exact attributes per helper."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from openinference.instrumentation import OITracer, TraceConfig
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.emitter import (
    ContentCapture,
    Document,
    EmitterError,
    EvalCase,
    JsonValue,
    agent_run,
    approval,
    content_hash,
    downstream_write,
    policy_decision,
    prompt,
    retrieval,
    tool_call,
)
from agentledger.schema import conventions as conv

RUN_ID = "run_test_0001"


class Recorder:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {span.name: dict(span.attributes or {}) for span in self.spans()}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.provider.shutdown()


def _run(recorder: Recorder, capture: ContentCapture = ContentCapture.OFF) -> agent_run:
    return agent_run(
        "refund-agent-1", agent_name="refund-agent", run_id=RUN_ID, capture=capture, tracer_provider=recorder.provider
    )


_RUN_KEYS = {conv.AGENT_RUN_ID: RUN_ID, conv.SESSION_ID: RUN_ID}
ARGUMENTS: dict[str, JsonValue] = {"order_id": "A-1001", "amount": 42.0}


def test_every_span_of_a_run_carries_the_run_id_and_is_a_child_of_the_run(recorder: Recorder) -> None:
    with _run(recorder) as run:
        with retrieval("zendesk", provenance=conv.InputProvenanceValues.USER_PROVIDED):
            pass
        with prompt("gpt-4.1-mini", [{"role": "user", "content": "hi"}]):
            with tool_call("lookup", access=conv.ToolAccessValues.READ):
                pass
        with approval("issue_refund") as decision:
            decision.decide(conv.ApprovalDecisionValues.APPROVED, "user:ops")
        with policy_decision("refunds.max-amount", conv.PolicyDecisionValues.ALLOW):
            pass
        with downstream_write("stripe", action=conv.WriteActionValues.TRANSFER, ref="re_1"):
            pass
        assert run.run_id == RUN_ID

    spans = recorder.spans()
    root = next(span for span in spans if span.parent is None)
    assert len(spans) == 7
    assert all(dict(span.attributes or {}).items() >= _RUN_KEYS.items() for span in spans)
    assert {span.context.trace_id for span in spans} == {root.context.trace_id}
    assert [dict(span.attributes or {})[conv.AGENTLEDGER_SPAN_TYPE] for span in spans] == [
        "retrieval", "tool_call", "prompt", "approval", "policy_decision", "downstream_write", "run",
    ]  # fmt: skip


def test_run_span_attributes_and_a_generated_time_ordered_run_id(recorder: Recorder) -> None:
    with agent_run(
        "refund-agent-1",
        agent_name="refund-agent",
        task="Refund SUP-1",
        autonomy=conv.RunAutonomyLevelValues.APPROVE_HIGH_RISK,
        capture=ContentCapture.FULL,
        tracer_provider=recorder.provider,
    ) as run:
        run.set_outcome(conv.RunOutcomeValues.ESCALATED)
    with agent_run("refund-agent-1", tracer_provider=recorder.provider) as later:
        pass

    assert re.fullmatch(r"run_[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}", run.run_id)
    # UUIDv7: the first 48 bits are the Unix time in ms.
    assert later.run_id[4:16] >= run.run_id[4:16]
    first = recorder.spans()[0]
    assert first.name == "invoke_agent refund-agent"
    assert dict(first.attributes or {}) == {
        conv.AGENT_RUN_ID: run.run_id,
        conv.SESSION_ID: run.run_id,
        conv.AGENTLEDGER_SPAN_TYPE: "run",
        conv.GEN_AI_OPERATION_NAME: "invoke_agent",
        conv.GEN_AI_AGENT_ID: "refund-agent-1",
        conv.GEN_AI_AGENT_NAME: "refund-agent",
        conv.AGENTLEDGER_RUN_CONTENT_CAPTURE: "full",
        conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL: "approve_high_risk",
        conv.AGENTLEDGER_RUN_TASK: "Refund SUP-1",
        conv.INPUT_VALUE: "Refund SUP-1",
        conv.INPUT_MIME_TYPE: "text/plain",
        conv.OPENINFERENCE_SPAN_KIND: "AGENT",
        conv.AGENTLEDGER_RUN_OUTCOME: "escalated",
    }


def test_an_eval_run_carries_its_suite_case_version_workflow_and_outcome_reason(recorder: Recorder) -> None:
    case = EvalCase(suite="refunds-gold", case="case-0042", version="git:3f2a9c1")
    with agent_run("refund-agent-1", workflow="support-refunds", eval_case=case,
                   tracer_provider=recorder.provider) as run:  # fmt: skip
        run.set_outcome(conv.RunOutcomeValues.ESCALATED, reason="refund above limit")

    attributes = dict(recorder.spans()[0].attributes or {})
    assert {key: attributes[key] for key in attributes if key.startswith(("agentledger.eval.", "gen_ai.workflow"))} == {
        conv.AGENTLEDGER_EVAL_SUITE: "refunds-gold",
        conv.AGENTLEDGER_EVAL_CASE: "case-0042",
        conv.AGENTLEDGER_EVAL_VERSION: "git:3f2a9c1",
        conv.GEN_AI_WORKFLOW_NAME: "support-refunds",
    }
    assert attributes[conv.AGENTLEDGER_RUN_OUTCOME_REASON] == "refund above limit"


def test_a_run_that_raises_ends_as_failure_and_the_error_propagates(recorder: Recorder) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with _run(recorder):
            raise RuntimeError("boom")

    (span,) = recorder.spans()
    assert dict(span.attributes or {})[conv.AGENTLEDGER_RUN_OUTCOME] == "failure"
    assert span.status.status_code.name == "ERROR"


def test_tool_call_attributes_per_capture_mode(recorder: Recorder) -> None:
    common = {
        **_RUN_KEYS,
        conv.AGENTLEDGER_SPAN_TYPE: "tool_call",
        conv.GEN_AI_OPERATION_NAME: "execute_tool",
        conv.GEN_AI_TOOL_NAME: "issue_refund",
        conv.TOOL_NAME: "issue_refund",
        conv.GEN_AI_TOOL_CALL_ID: "call_1",
        conv.GEN_AI_TOOL_TYPE: "function",
        conv.AGENTLEDGER_TOOL_ACCESS: "write",
        conv.AGENTLEDGER_TOOL_TARGET: "crm:customer/C-1",
        conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH: content_hash(ARGUMENTS),
        conv.AGENTLEDGER_TOOL_INFLUENCED_BY: ("user_provided", "retrieved"),
        conv.OPENINFERENCE_SPAN_KIND: "TOOL",
    }
    recorded = {}
    for capture in ContentCapture:
        with _run(recorder, capture):
            with tool_call(
                "issue_refund",
                access=conv.ToolAccessValues.WRITE,
                arguments=ARGUMENTS,
                target="crm:customer/C-1",
                call_id="call_1",
                influenced_by=[conv.InputProvenanceValues.USER_PROVIDED, conv.InputProvenanceValues.RETRIEVED],
            ) as call:
                call.set_result({"refund_id": "re_1"})
        recorded[capture] = recorder.by_name()["execute_tool issue_refund"]

    assert recorded[ContentCapture.OFF] == common
    assert recorded[ContentCapture.HASHES] == {
        **common,
        conv.AGENTLEDGER_TOOL_RESULT_HASH: content_hash({"refund_id": "re_1"}),
    }
    assert recorded[ContentCapture.FULL] == {
        **common,
        conv.GEN_AI_TOOL_CALL_ARGUMENTS: '{"order_id":"A-1001","amount":42.0}',
        conv.INPUT_VALUE: '{"order_id":"A-1001","amount":42.0}',
        conv.INPUT_MIME_TYPE: "application/json",
        conv.GEN_AI_TOOL_CALL_RESULT: '{"refund_id":"re_1"}',
        conv.OUTPUT_VALUE: '{"refund_id":"re_1"}',
        conv.OUTPUT_MIME_TYPE: "application/json",
    }


def test_prompt_hashes_the_assembled_context_and_sets_genai_and_openinference_keys(recorder: Recorder) -> None:
    context: dict[str, JsonValue] = {"ticket": "SUP-1", "policy": "kb:refund-policy#v7", "amount": 240.0}
    messages = [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "Refund 240 EUR"}]
    with _run(recorder, ContentCapture.FULL):
        with prompt("gpt-4.1-mini", messages, context=context, context_sources=["SUP-1"]) as call:  # type: ignore[arg-type]
            call.record_response([{"role": "assistant", "content": "Escalating."}], input_tokens=120, output_tokens=8)

    assert recorder.by_name()["chat gpt-4.1-mini"] == {
        **_RUN_KEYS,
        conv.AGENTLEDGER_SPAN_TYPE: "prompt",
        conv.GEN_AI_OPERATION_NAME: "chat",
        conv.GEN_AI_REQUEST_MODEL: "gpt-4.1-mini",
        conv.LLM_MODEL_NAME: "gpt-4.1-mini",
        conv.AGENTLEDGER_PROMPT_CONTEXT_HASH: content_hash(context),
        conv.AGENTLEDGER_PROMPT_CONTEXT_SOURCES: ("SUP-1",),
        conv.OPENINFERENCE_SPAN_KIND: "LLM",
        conv.GEN_AI_INPUT_MESSAGES: '[{"role":"system","parts":[{"type":"text","content":"Be exact."}]},'
        '{"role":"user","parts":[{"type":"text","content":"Refund 240 EUR"}]}]',
        conv.INPUT_VALUE: '{"messages":[{"role":"system","content":"Be exact."},'
        '{"role":"user","content":"Refund 240 EUR"}]}',
        conv.INPUT_MIME_TYPE: "application/json",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "Be exact.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "Refund 240 EUR",
        conv.GEN_AI_USAGE_INPUT_TOKENS: 120,
        conv.LLM_TOKEN_COUNT_PROMPT: 120,
        conv.GEN_AI_USAGE_OUTPUT_TOKENS: 8,
        conv.LLM_TOKEN_COUNT_COMPLETION: 8,
        conv.LLM_TOKEN_COUNT_TOTAL: 128,
        conv.GEN_AI_OUTPUT_MESSAGES: '[{"role":"assistant","parts":[{"type":"text","content":"Escalating."}]}]',
        conv.OUTPUT_VALUE: '{"messages":[{"role":"assistant","content":"Escalating."}]}',
        conv.OUTPUT_MIME_TYPE: "application/json",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Escalating.",
    }


def test_prompt_without_context_hashes_the_messages_and_off_records_no_content(recorder: Recorder) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with _run(recorder):
        with prompt("m", messages) as call:  # type: ignore[arg-type]
            call.record_response([{"role": "assistant", "content": "hello"}])

    attributes = recorder.by_name()["chat m"]
    assert attributes[conv.AGENTLEDGER_PROMPT_CONTEXT_HASH] == content_hash(messages)
    assert not {conv.INPUT_VALUE, conv.OUTPUT_VALUE, conv.GEN_AI_INPUT_MESSAGES} & attributes.keys()
    assert not any(key.startswith("llm.input_messages") for key in attributes)


def test_retrieval_records_provenance_and_document_ids_and_hashes_content(recorder: Recorder) -> None:
    documents = [Document("SUP-1", "My blender broke", 1.0), Document("kb:policy", "Refunds under 100 EUR")]
    with _run(recorder, ContentCapture.HASHES):
        with retrieval(
            "zendesk",
            provenance=conv.InputProvenanceValues.USER_PROVIDED,
            query="ticket SUP-1",
            source="zendesk://tickets/1",
            sources=["zendesk://tickets/1"],
        ) as found:
            found.set_documents(documents)

    assert recorder.by_name()["retrieval zendesk"] == {
        **_RUN_KEYS,
        conv.AGENTLEDGER_SPAN_TYPE: "retrieval",
        conv.GEN_AI_OPERATION_NAME: "retrieval",
        conv.GEN_AI_DATA_SOURCE_ID: "zendesk",
        conv.AGENTLEDGER_INPUT_PROVENANCE: "user_provided",
        conv.AGENTLEDGER_INPUT_SOURCE: "zendesk://tickets/1",
        conv.AGENTLEDGER_RETRIEVAL_SOURCES: ("zendesk://tickets/1",),
        conv.OPENINFERENCE_SPAN_KIND: "RETRIEVER",
        "retrieval.documents.0.document.id": "SUP-1",
        "retrieval.documents.0.document.score": 1.0,
        "retrieval.documents.1.document.id": "kb:policy",
        conv.GEN_AI_RETRIEVAL_DOCUMENTS: '[{"id":"SUP-1","score":1.0},{"id":"kb:policy"}]',
        conv.AGENTLEDGER_RETRIEVAL_DOCUMENTS_HASH: content_hash(
            [
                {"id": "SUP-1", "content": "My blender broke", "score": 1.0},
                {"id": "kb:policy", "content": "Refunds under 100 EUR"},
            ]
        ),
    }


def test_a_rejected_approval_is_recorded_and_no_tool_call_follows(recorder: Recorder) -> None:
    with _run(recorder):
        with approval(
            "issue_refund", tool_call_id="call_9", arguments=ARGUMENTS, reason="Refund above 100 EUR"
        ) as request:
            request.decide(conv.ApprovalDecisionValues.REJECTED, "user:maria.lopez")
        if request.approved:
            with tool_call("issue_refund", access=conv.ToolAccessValues.WRITE, arguments=ARGUMENTS):
                pass

    names = [span.name for span in recorder.spans()]
    assert names == ["approval issue_refund", "invoke_agent refund-agent"]
    assert recorder.by_name()["approval issue_refund"] == {
        **_RUN_KEYS,
        conv.AGENTLEDGER_SPAN_TYPE: "approval",
        conv.GEN_AI_TOOL_NAME: "issue_refund",
        conv.OPENINFERENCE_SPAN_KIND: "CHAIN",
        conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID: "call_9",
        # The hash of the arguments approved equals the tool call's arguments hash, had it run.
        conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH: content_hash(ARGUMENTS),
        conv.AGENTLEDGER_APPROVAL_DECISION: "rejected",
        conv.OUTPUT_VALUE: "rejected",
        conv.OUTPUT_MIME_TYPE: "text/plain",
        conv.AGENTLEDGER_APPROVAL_APPROVER: "user:maria.lopez",
        conv.AGENTLEDGER_APPROVAL_REASON: "Refund above 100 EUR",
    }


def test_an_approval_left_undecided_is_recorded_as_timed_out(recorder: Recorder) -> None:
    with _run(recorder):
        with approval("merge_pr") as request:
            pass

    assert not request.approved
    assert recorder.by_name()["approval merge_pr"][conv.AGENTLEDGER_APPROVAL_DECISION] == "timed_out"


def test_policy_decision_given_later(recorder: Recorder) -> None:
    with _run(recorder):
        with policy_decision("refunds.max-amount") as policy:
            policy.decide(conv.PolicyDecisionValues.REVIEW, rule_id="amount-over-100", reason="240 > 100")

    assert recorder.by_name()["policy refunds.max-amount"] == {
        **_RUN_KEYS,
        conv.AGENTLEDGER_SPAN_TYPE: "policy_decision",
        conv.AGENTLEDGER_POLICY_ID: "refunds.max-amount",
        conv.OPENINFERENCE_SPAN_KIND: "GUARDRAIL",
        conv.AGENTLEDGER_POLICY_DECISION: "review",
        conv.OUTPUT_VALUE: "review",
        conv.OUTPUT_MIME_TYPE: "text/plain",
        conv.AGENTLEDGER_POLICY_RULE_ID: "amount-over-100",
        conv.AGENTLEDGER_POLICY_REASON: "240 > 100",
    }


def test_downstream_write_returns_the_trailer_and_records_the_ref_set_later(recorder: Recorder) -> None:
    with _run(recorder):
        with downstream_write(
            "github", action=conv.WriteActionValues.CREATE, target="github:acme/shop", tool_call_id="call_pr"
        ) as write:
            description = f"Fix rounding\n\n{write.trailer}"
            write.set_ref("https://github.com/acme/shop/pull/7")

    assert description == f"Fix rounding\n\nAgent-Run-Id: {RUN_ID}"
    assert recorder.by_name()["write github"] == {
        **_RUN_KEYS,
        conv.AGENTLEDGER_SPAN_TYPE: "downstream_write",
        conv.AGENTLEDGER_WRITE_SYSTEM: "github",
        conv.AGENTLEDGER_WRITE_ACTION: "create",
        conv.OPENINFERENCE_SPAN_KIND: "CHAIN",
        conv.AGENTLEDGER_TOOL_TARGET: "github:acme/shop",
        conv.AGENTLEDGER_WRITE_TOOL_CALL_ID: "call_pr",
        conv.AGENTLEDGER_WRITE_REF: "https://github.com/acme/shop/pull/7",
    }


def test_tool_call_as_decorator_records_each_call_with_its_bound_arguments(recorder: Recorder) -> None:
    @tool_call("lookup_order", access=conv.ToolAccessValues.READ)
    def lookup_order(order_id: str, verbose: bool = False) -> dict[str, object]:
        return {"order_id": order_id, "status": "delivered"}

    with _run(recorder, ContentCapture.FULL):
        assert lookup_order("A-1") == {"order_id": "A-1", "status": "delivered"}
        lookup_order("A-2", verbose=True)

    calls = [dict(span.attributes or {}) for span in recorder.spans() if span.name == "execute_tool lookup_order"]
    assert [call[conv.GEN_AI_TOOL_CALL_ARGUMENTS] for call in calls] == [
        '{"order_id":"A-1","verbose":false}',
        '{"order_id":"A-2","verbose":true}',
    ]
    assert calls[0][conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH] == content_hash({"order_id": "A-1", "verbose": False})
    assert calls[1][conv.GEN_AI_TOOL_CALL_RESULT] == '{"order_id":"A-2","status":"delivered"}'
    assert calls[0][conv.GEN_AI_TOOL_CALL_ID] != calls[1][conv.GEN_AI_TOOL_CALL_ID]


def test_helpers_outside_a_run_refuse_to_record(recorder: Recorder) -> None:
    with pytest.raises(EmitterError, match="inside `with agent_run"):
        with tool_call("x", access=conv.ToolAccessValues.READ):
            pass
    assert recorder.spans() == []


def test_openinference_spans_inside_a_run_get_the_run_id_as_session(recorder: Recorder) -> None:
    # Third-party OpenInference code reads session.id from the context the run attached.
    third_party = OITracer(recorder.provider.get_tracer("third-party"), config=TraceConfig())
    with _run(recorder):
        with third_party.start_as_current_span("vector search", openinference_span_kind="retriever"):
            pass

    assert recorder.by_name()["vector search"][conv.SESSION_ID] == RUN_ID


def test_coroutine_functions_are_refused_as_decorated_functions() -> None:
    async def fetch() -> None:
        pass

    with pytest.raises(EmitterError, match="is a coroutine function"):
        tool_call("fetch", access=conv.ToolAccessValues.READ)(fetch)
    with pytest.raises(EmitterError, match="is a coroutine function"):
        policy_decision("p")(fetch)


def test_other_helpers_decorate_plain_functions(recorder: Recorder) -> None:
    @policy_decision("refunds.max-amount", conv.PolicyDecisionValues.ALLOW)
    def check() -> str:
        return "checked"

    with _run(recorder):
        assert check() == "checked"
        check()

    assert [span.name for span in recorder.spans()].count("policy refunds.max-amount") == 2
