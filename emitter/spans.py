"""The emitter's span helpers: one context manager (and decorator) per timeline entry type.

Each sets agentledger's attributes, the matching OTel GenAI ones and the OpenInference ones Phoenix
renders. The helpers are lower-case classes, like contextlib's `suppress`, because they are used as
functions: `with tool_call("issue_refund", access="write", arguments=...) as call: ...`.
"""

from __future__ import annotations

import functools
import inspect
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from types import TracebackType
from typing import Final, ParamSpec, Self, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, TracerProvider

from agentledger import __version__
from agentledger.emitter.content import (
    Attributes,
    Document,
    Message,
    document_json,
    genai_messages,
    json_or_text,
    json_text,
    messages_json,
    openinference_messages,
)
from agentledger.emitter.emitter_span import EmitterSpan, refuse_coroutine
from agentledger.emitter.run_context import (
    ContentCapture,
    RunState,
    attach_run,
    detach_run,
    new_run_id,
)
from agentledger.schema import conventions as conv
from agentledger.schema import openinference as oi
from agentledger.schema.canonical import JsonValue, content_hash

TRAILER_KEY: Final = "Agent-Run-Id"
# The instrumentation scope of every emitter span; the collector recognises the emitter by it.
TRACER_NAME: Final = "agentledger.emitter"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class EvalCase:
    """Marks a run as one case of an eval suite, run by one version of the agent (git commit, model,
    prompt version), so `agentledger gate` can compare versions on the same cases."""

    suite: str
    case: str
    version: str


class agent_run(EmitterSpan):
    """The root span of an agent run; every emitter span inside it carries its run id.

    A run resumed later (after a human approval, in another process) passes the same `run_id` again.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        agent_name: str = "",
        task: str = "",
        run_id: str | None = None,
        autonomy: conv.RunAutonomyLevelValues | None = None,
        capture: ContentCapture = ContentCapture.OFF,
        tracer_provider: TracerProvider | None = None,
        workflow: str = "",
        eval_case: EvalCase | None = None,
        subjects: Sequence[str] = (),
        requester: str = "",
    ) -> None:
        super().__init__()
        self.agent_id = agent_id
        # What the run is about (target references such as crm:customer/C-1): the audit compares writes with them.
        self.subjects = list(subjects)
        self.requester = requester
        self.workflow = workflow
        self.eval_case = eval_case
        self.outcome_reason = ""
        self.agent_name = agent_name
        self.task = task
        self.requested_run_id = run_id
        self.autonomy = autonomy
        self.capture = capture
        self.tracer_provider = tracer_provider
        self.outcome: conv.RunOutcomeValues | None = None
        self._token: Token[Context] | None = None

    def set_outcome(self, outcome: conv.RunOutcomeValues, reason: str = "") -> None:
        """How the run ended; `reason` (e.g. why it was escalated) is what the metrics group escalations by."""
        self.outcome = outcome
        self.outcome_reason = reason

    def _enter_run(self) -> RunState:
        tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=self.tracer_provider)
        state = RunState(self.requested_run_id or new_run_id(), tracer, self.capture)
        self._token = attach_run(state)
        return state

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        token = self._token
        try:
            super().__exit__(exc_type, exc, traceback)
        finally:
            if token is not None:
                detach_run(token)
            self._token = None

    def _name(self) -> str:
        return f"invoke_agent {self.agent_name or self.agent_id}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.RUN.value,
            conv.GEN_AI_OPERATION_NAME: "invoke_agent",
            conv.GEN_AI_AGENT_ID: self.agent_id,
            conv.AGENTLEDGER_RUN_CONTENT_CAPTURE: capture.value,
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_AGENT,
        }
        if self.agent_name:
            attributes[conv.GEN_AI_AGENT_NAME] = self.agent_name
        if self.autonomy is not None:
            attributes[conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL] = self.autonomy.value
        if self.workflow:
            attributes[conv.GEN_AI_WORKFLOW_NAME] = self.workflow
        if self.eval_case is not None:
            attributes[conv.AGENTLEDGER_EVAL_SUITE] = self.eval_case.suite
            attributes[conv.AGENTLEDGER_EVAL_CASE] = self.eval_case.case
            attributes[conv.AGENTLEDGER_EVAL_VERSION] = self.eval_case.version
        if self.subjects:
            attributes[conv.AGENTLEDGER_RUN_SUBJECTS] = self.subjects
        if self.requester:
            attributes[conv.AGENTLEDGER_RUN_REQUESTER] = self.requester
        if self.task:
            attributes[conv.AGENTLEDGER_RUN_TASK] = self.task
            if capture is ContentCapture.FULL:
                attributes[conv.INPUT_VALUE] = self.task
                attributes[conv.INPUT_MIME_TYPE] = oi.MIME_TEXT
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        outcome = self.outcome or (conv.RunOutcomeValues.FAILURE if failed else None)
        attributes: Attributes = {conv.AGENTLEDGER_RUN_OUTCOME: outcome.value} if outcome is not None else {}
        if self.outcome_reason:
            attributes[conv.AGENTLEDGER_RUN_OUTCOME_REASON] = self.outcome_reason
        return attributes


class prompt(EmitterSpan):
    """A model call. The context hash covers `context` (the assembled context), or the messages if none is given."""

    _span_kind = SpanKind.CLIENT

    def __init__(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        context: JsonValue | None = None,
        context_sources: Sequence[str] = (),
        template_id: str = "",
        operation: str = "chat",
    ) -> None:
        super().__init__()
        self.model = model
        self.messages = list(messages)
        # Hashed now, from the values the agent assembled: before any redaction anywhere downstream.
        self.context_hash = content_hash(context if context is not None else messages_json(self.messages))
        self.context_sources = list(context_sources)
        self.template_id = template_id
        self.operation = operation
        self.output_messages: list[Message] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    def record_response(
        self,
        messages: Sequence[Message] = (),
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        self.output_messages = list(messages)
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens

    def _name(self) -> str:
        return f"{self.operation} {self.model}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.PROMPT.value,
            conv.GEN_AI_OPERATION_NAME: self.operation,
            conv.GEN_AI_REQUEST_MODEL: self.model,
            conv.LLM_MODEL_NAME: self.model,
            conv.AGENTLEDGER_PROMPT_CONTEXT_HASH: self.context_hash,
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_LLM,
        }
        if self.context_sources:
            attributes[conv.AGENTLEDGER_PROMPT_CONTEXT_SOURCES] = self.context_sources
        if self.template_id:
            attributes[conv.AGENTLEDGER_PROMPT_TEMPLATE_ID] = self.template_id
        if capture is ContentCapture.FULL:
            attributes[conv.GEN_AI_INPUT_MESSAGES] = genai_messages(self.messages)
            attributes[conv.INPUT_VALUE] = json_text({"messages": messages_json(self.messages)})
            attributes[conv.INPUT_MIME_TYPE] = oi.MIME_JSON
            attributes.update(openinference_messages(oi.INPUT_MESSAGES_PREFIX, self.messages))
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        attributes: Attributes = {}
        if self.input_tokens is not None:
            attributes[conv.GEN_AI_USAGE_INPUT_TOKENS] = self.input_tokens
            attributes[conv.LLM_TOKEN_COUNT_PROMPT] = self.input_tokens
        if self.output_tokens is not None:
            attributes[conv.GEN_AI_USAGE_OUTPUT_TOKENS] = self.output_tokens
            attributes[conv.LLM_TOKEN_COUNT_COMPLETION] = self.output_tokens
        if self.input_tokens is not None and self.output_tokens is not None:
            attributes[conv.LLM_TOKEN_COUNT_TOTAL] = self.input_tokens + self.output_tokens
        if not self.output_messages:
            return attributes
        if capture is ContentCapture.FULL:
            attributes[conv.GEN_AI_OUTPUT_MESSAGES] = genai_messages(self.output_messages)
            attributes[conv.OUTPUT_VALUE] = json_text({"messages": messages_json(self.output_messages)})
            attributes[conv.OUTPUT_MIME_TYPE] = oi.MIME_JSON
            attributes.update(openinference_messages(oi.OUTPUT_MESSAGES_PREFIX, self.output_messages))
        elif capture is ContentCapture.HASHES:
            attributes[conv.AGENTLEDGER_PROMPT_OUTPUT_HASH] = content_hash(messages_json(self.output_messages))
        return attributes


class retrieval(EmitterSpan):
    """A retrieval of documents or records, labelled with where its content came from (provenance)."""

    _span_kind = SpanKind.CLIENT

    def __init__(
        self,
        data_source: str,
        *,
        provenance: conv.InputProvenanceValues,
        query: str = "",
        source: str = "",
        sources: Sequence[str] = (),
        documents: Sequence[Document] = (),
    ) -> None:
        super().__init__()
        self.data_source = data_source
        self.provenance = provenance
        self.query = query
        self.source = source
        self.sources = list(sources)
        self.documents = list(documents)

    def set_documents(self, documents: Sequence[Document]) -> None:
        self.documents = list(documents)

    def _name(self) -> str:
        return f"retrieval {self.data_source}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.RETRIEVAL.value,
            conv.GEN_AI_OPERATION_NAME: "retrieval",
            conv.GEN_AI_DATA_SOURCE_ID: self.data_source,
            conv.AGENTLEDGER_INPUT_PROVENANCE: self.provenance.value,
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_RETRIEVER,
        }
        if self.source:
            attributes[conv.AGENTLEDGER_INPUT_SOURCE] = self.source
        if self.sources:
            attributes[conv.AGENTLEDGER_RETRIEVAL_SOURCES] = self.sources
        if self.query and capture is ContentCapture.FULL:
            attributes[conv.GEN_AI_RETRIEVAL_QUERY_TEXT] = self.query
            attributes[conv.INPUT_VALUE] = self.query
            attributes[conv.INPUT_MIME_TYPE] = oi.MIME_TEXT
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        if not self.documents:
            return {}
        # Ids and scores are references, not content: they are recorded whatever the capture mode; the
        # content only with full capture.
        summaries: list[JsonValue] = []
        attributes: Attributes = {}
        for index, document in enumerate(self.documents):
            summary: dict[str, JsonValue] = {"id": document.id}
            attributes[oi.flattened_key(oi.RETRIEVAL_DOCUMENTS_PREFIX, index, oi.DOCUMENT_ITEM, "id")] = document.id
            if document.score is not None:
                summary["score"] = document.score
                key = oi.flattened_key(oi.RETRIEVAL_DOCUMENTS_PREFIX, index, oi.DOCUMENT_ITEM, "score")
                attributes[key] = document.score
            if capture is ContentCapture.FULL:
                key = oi.flattened_key(oi.RETRIEVAL_DOCUMENTS_PREFIX, index, oi.DOCUMENT_ITEM, "content")
                attributes[key] = document.content
                summary["content"] = document.content
            summaries.append(summary)
        attributes[conv.GEN_AI_RETRIEVAL_DOCUMENTS] = json_text(summaries)
        if capture is ContentCapture.HASHES:
            attributes[conv.AGENTLEDGER_RETRIEVAL_DOCUMENTS_HASH] = content_hash(
                [document_json(document) for document in self.documents]
            )
        return attributes


def new_tool_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


class tool_call(EmitterSpan):
    """A tool execution. The arguments hash is always recorded; arguments and result per the capture mode.

    As a decorator without `arguments`, the decorated function's bound arguments are the tool arguments and
    its return value the result.
    """

    def __init__(
        self,
        name: str,
        *,
        access: conv.ToolAccessValues,
        arguments: Mapping[str, JsonValue] | None = None,
        target: str = "",
        call_id: str | None = None,
        influenced_by: Sequence[conv.InputProvenanceValues] = (),
        attempt: int | None = None,
        result_trust: conv.ToolResultTrustValues | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.access = access
        self.attempt = attempt
        self.result_trust = result_trust
        self.arguments: Mapping[str, JsonValue] | None = arguments
        self.target = target
        self._call_id_given = call_id is not None
        self.call_id = call_id or new_tool_call_id()
        self.influenced_by = list(influenced_by)
        self.result: JsonValue = None
        self._has_result = False

    def _recreate_cm(self) -> Self:
        fresh = super()._recreate_cm()
        fresh.result, fresh._has_result = None, False
        if not self._call_id_given:  # each call of a decorated tool is its own tool call
            fresh.call_id = new_tool_call_id()
        return fresh

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:  # type: ignore[override]
        refuse_coroutine(func)
        signature = inspect.signature(func)

        @functools.wraps(func)
        def traced(*args: P.args, **kwargs: P.kwargs) -> R:
            scope = self._recreate_cm()
            if scope.arguments is None:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                scope.arguments = {name: json_or_text(value) for name, value in bound.arguments.items()}
            with scope:
                result = func(*args, **kwargs)
                scope.set_result(json_or_text(result))
                return result

        return traced

    def set_result(self, result: JsonValue) -> None:
        self.result = result
        self._has_result = True

    def _name(self) -> str:
        return f"execute_tool {self.name}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        arguments = dict(self.arguments or {})
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.TOOL_CALL.value,
            conv.GEN_AI_OPERATION_NAME: "execute_tool",
            conv.GEN_AI_TOOL_NAME: self.name,
            conv.TOOL_NAME: self.name,
            conv.GEN_AI_TOOL_CALL_ID: self.call_id,
            conv.GEN_AI_TOOL_TYPE: "function",
            conv.AGENTLEDGER_TOOL_ACCESS: self.access.value,
            conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH: content_hash(arguments),
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_TOOL,
        }
        if self.target:
            attributes[conv.AGENTLEDGER_TOOL_TARGET] = self.target
        if self.influenced_by:
            attributes[conv.AGENTLEDGER_TOOL_INFLUENCED_BY] = [label.value for label in self.influenced_by]
        if self.attempt is not None:
            attributes[conv.AGENTLEDGER_TOOL_ATTEMPT] = self.attempt
        if self.result_trust is not None:
            attributes[conv.AGENTLEDGER_TOOL_RESULT_TRUST] = self.result_trust.value
        if capture is ContentCapture.FULL:
            text = json_text(arguments)
            attributes[conv.GEN_AI_TOOL_CALL_ARGUMENTS] = text
            attributes[conv.INPUT_VALUE] = text
            attributes[conv.INPUT_MIME_TYPE] = oi.MIME_JSON
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        if not self._has_result:
            return {}
        if capture is ContentCapture.FULL:
            text = self.result if isinstance(self.result, str) else json_text(self.result)
            mime = oi.MIME_TEXT if isinstance(self.result, str) else oi.MIME_JSON
            return {conv.GEN_AI_TOOL_CALL_RESULT: text, conv.OUTPUT_VALUE: text, conv.OUTPUT_MIME_TYPE: mime}
        if capture is ContentCapture.HASHES:
            return {conv.AGENTLEDGER_TOOL_RESULT_HASH: content_hash(self.result)}
        return {}


class approval(EmitterSpan):
    """An approval request, from request to decision; recorded whatever the decision, so a rejection that
    stops a tool call still leaves evidence. A block left without decide() records `timed_out`."""

    def __init__(
        self,
        tool_name: str,
        *,
        tool_call_id: str = "",
        arguments: Mapping[str, JsonValue] | None = None,
        reason: str = "",
    ) -> None:
        super().__init__()
        self.tool_name = tool_name
        self.tool_call_id = tool_call_id
        self.arguments = arguments
        self.reason = reason
        self.decision: conv.ApprovalDecisionValues | None = None
        self.approver = ""

    def decide(self, decision: conv.ApprovalDecisionValues, approver: str, reason: str = "") -> None:
        self.decision = decision
        self.approver = approver
        if reason:
            self.reason = reason

    @property
    def approved(self) -> bool:
        return self.decision in (conv.ApprovalDecisionValues.APPROVED, conv.ApprovalDecisionValues.AUTO_APPROVED)

    def _name(self) -> str:
        return f"approval {self.tool_name}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.APPROVAL.value,
            conv.GEN_AI_TOOL_NAME: self.tool_name,
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_CHAIN,
        }
        if self.tool_call_id:
            attributes[conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID] = self.tool_call_id
        if self.arguments is not None:
            # The same hash as the tool call's: proves the executed arguments are the approved ones.
            attributes[conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH] = content_hash(dict(self.arguments))
            if capture is ContentCapture.FULL:
                attributes[conv.INPUT_VALUE] = json_text(dict(self.arguments))
                attributes[conv.INPUT_MIME_TYPE] = oi.MIME_JSON
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        decision = self.decision or conv.ApprovalDecisionValues.TIMED_OUT
        attributes: Attributes = {
            conv.AGENTLEDGER_APPROVAL_DECISION: decision.value,
            conv.OUTPUT_VALUE: decision.value,
            conv.OUTPUT_MIME_TYPE: oi.MIME_TEXT,
        }
        if self.approver:
            attributes[conv.AGENTLEDGER_APPROVAL_APPROVER] = self.approver
        if self.reason:
            attributes[conv.AGENTLEDGER_APPROVAL_REASON] = self.reason
        return attributes


class policy_decision(EmitterSpan):
    """A policy or guardrail evaluation; the decision may be given up front or with decide()."""

    def __init__(
        self,
        policy_id: str,
        decision: conv.PolicyDecisionValues | None = None,
        *,
        rule_id: str = "",
        reason: str = "",
        tool_call_id: str = "",
        tool_name: str = "",
        arguments: Mapping[str, JsonValue] | None = None,
    ) -> None:
        super().__init__()
        self.policy_id = policy_id
        self.decision = decision
        self.rule_id = rule_id
        self.reason = reason
        # The call evaluated (it may run after the decision) and the arguments seen, so the audit applies the
        # decision to that call only.
        self.tool_call_id = tool_call_id
        self.tool_name = tool_name
        self.arguments = arguments

    def decide(self, decision: conv.PolicyDecisionValues, *, rule_id: str = "", reason: str = "") -> None:
        self.decision = decision
        self.rule_id = rule_id or self.rule_id
        self.reason = reason or self.reason

    def _name(self) -> str:
        return f"policy {self.policy_id}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.POLICY_DECISION.value,
            conv.AGENTLEDGER_POLICY_ID: self.policy_id,
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_GUARDRAIL,
        }
        if self.tool_call_id:
            attributes[conv.AGENTLEDGER_POLICY_TOOL_CALL_ID] = self.tool_call_id
        if self.tool_name:
            attributes[conv.AGENTLEDGER_POLICY_TOOL_NAME] = self.tool_name
        if self.arguments is not None:
            attributes[conv.AGENTLEDGER_POLICY_ARGUMENTS_HASH] = content_hash(dict(self.arguments))
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        attributes: Attributes = {}
        if self.decision is not None:
            attributes[conv.AGENTLEDGER_POLICY_DECISION] = self.decision.value
            attributes[conv.OUTPUT_VALUE] = self.decision.value
            attributes[conv.OUTPUT_MIME_TYPE] = oi.MIME_TEXT
        if self.rule_id:
            attributes[conv.AGENTLEDGER_POLICY_RULE_ID] = self.rule_id
        if self.reason:
            attributes[conv.AGENTLEDGER_POLICY_REASON] = self.reason
        return attributes


def run_trailer(run_id: str) -> str:
    """The line a downstream object (PR description, commit, ticket) carries to name its run."""
    return f"{TRAILER_KEY}: {run_id}"


class downstream_write(EmitterSpan):
    """A write to another system. `trailer` is the text to attach to the written object (PR, ticket) so
    the system's own record leads back to the run; the ref may be set once the system returned it."""

    _span_kind = SpanKind.CLIENT

    def __init__(
        self,
        system: str,
        *,
        action: conv.WriteActionValues,
        ref: str = "",
        target: str = "",
        tool_call_id: str = "",
    ) -> None:
        super().__init__()
        self.system = system
        self.action = action
        self.ref = ref
        self.target = target
        self.tool_call_id = tool_call_id

    @property
    def trailer(self) -> str:
        return run_trailer(self.run_id)

    def set_ref(self, ref: str) -> None:
        self.ref = ref

    def _name(self) -> str:
        return f"write {self.system}"

    def _start_attributes(self, capture: ContentCapture) -> Attributes:
        attributes: Attributes = {
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.DOWNSTREAM_WRITE.value,
            conv.AGENTLEDGER_WRITE_SYSTEM: self.system,
            conv.AGENTLEDGER_WRITE_ACTION: self.action.value,
            conv.OPENINFERENCE_SPAN_KIND: oi.KIND_CHAIN,
        }
        if self.target:
            attributes[conv.AGENTLEDGER_TOOL_TARGET] = self.target
        if self.tool_call_id:
            attributes[conv.AGENTLEDGER_WRITE_TOOL_CALL_ID] = self.tool_call_id
        return attributes

    def _end_attributes(self, capture: ContentCapture, failed: bool) -> Attributes:
        return {conv.AGENTLEDGER_WRITE_REF: self.ref} if self.ref else {}
