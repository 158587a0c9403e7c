"""Demo traffic: agent runs sent through the plain OpenTelemetry SDK and its OTLP/HTTP exporter.

The refund run spans two traces (request, then the resume after a human approved), as real runs do.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Tracer

from agentledger.schema import conventions as conv


class DemoError(RuntimeError):
    """The demo spans could not be delivered; the message says where it tried."""


@dataclass(frozen=True)
class DemoRun:
    run_id: str
    description: str


def context_hash(context: object) -> str:
    canonical = json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class _FailureRecordingExporter(SpanExporter):
    """Delegates to the OTLP exporter and remembers a failed export, which the SDK only logs."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed = True
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def send_demo(collector_url: str) -> list[DemoRun]:
    endpoint = f"{collector_url.rstrip('/')}/v1/traces"
    exporter = _FailureRecordingExporter(OTLPSpanExporter(endpoint=endpoint, timeout=10))
    provider = TracerProvider(resource=Resource.create({"service.name": "refund-agent"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("agentledger.demo")
    run_id = f"run_{uuid.uuid4().hex[:20]}"
    try:
        _refund_run(tracer, run_id)
        if not provider.force_flush(timeout_millis=15_000):
            raise DemoError(f"the collector at {endpoint} did not take the demo spans in time")
    finally:
        provider.shutdown()
    if exporter.failed:
        raise DemoError(f"the collector at {endpoint} refused or did not answer; is `agentledger up` running?")
    return [DemoRun(run_id, "refund above the auto-refund limit, approved by a human, then executed")]


def _refund_run(tracer: Tracer, run_id: str) -> None:
    agent = {conv.GEN_AI_AGENT_ID: "refund-agent-prod-1", conv.GEN_AI_AGENT_NAME: "refund-agent"}
    run_attributes = {conv.AGENT_RUN_ID: run_id, **agent}
    ticket = {
        "ticket": "SUP-4411",
        "customer": "crm:customer/C-88123",
        "text": "My blender arrived broken, refund 240 EUR",
    }
    arguments = {"order_id": "A-1001", "amount": 240.0, "currency": "EUR"}

    # Trace 1: the agent reads the ticket, asks the model, hits the refund policy, requests approval.
    with tracer.start_as_current_span(
        "invoke_agent refund-agent",
        attributes={
            **run_attributes,
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.RUN,
            conv.GEN_AI_OPERATION_NAME: "invoke_agent",
            conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL: conv.RunAutonomyLevelValues.APPROVE_HIGH_RISK,
            conv.AGENTLEDGER_RUN_TASK: "Refund request in ticket SUP-4411",
        },
    ):
        with tracer.start_as_current_span(
            "retrieval zendesk",
            kind=SpanKind.CLIENT,
            attributes={
                **run_attributes,
                conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.RETRIEVAL,
                conv.GEN_AI_OPERATION_NAME: "retrieval",
                conv.GEN_AI_DATA_SOURCE_ID: "zendesk",
                conv.AGENTLEDGER_INPUT_PROVENANCE: conv.InputProvenanceValues.USER_PROVIDED,
                conv.AGENTLEDGER_RETRIEVAL_SOURCES: ["zendesk://tickets/4411"],
                conv.GEN_AI_RETRIEVAL_DOCUMENTS: json.dumps([{"id": "SUP-4411", "score": 1.0}]),
            },
        ):
            time.sleep(0.002)
        with tracer.start_as_current_span(
            "chat gpt-4.1-mini",
            kind=SpanKind.CLIENT,
            attributes={
                **run_attributes,
                conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.PROMPT,
                conv.GEN_AI_OPERATION_NAME: "chat",
                conv.GEN_AI_REQUEST_MODEL: "gpt-4.1-mini",
                conv.AGENTLEDGER_PROMPT_CONTEXT_HASH: context_hash(ticket),
                conv.AGENTLEDGER_PROMPT_CONTEXT_SOURCES: ["SUP-4411", "kb:refund-policy#v7"],
                conv.GEN_AI_USAGE_INPUT_TOKENS: 1250,
                conv.GEN_AI_USAGE_OUTPUT_TOKENS: 180,
            },
        ):
            time.sleep(0.002)
        with tracer.start_as_current_span(
            "policy refunds.max-amount",
            attributes={
                **run_attributes,
                conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.POLICY_DECISION,
                conv.AGENTLEDGER_POLICY_ID: "refunds.max-amount",
                conv.AGENTLEDGER_POLICY_RULE_ID: "amount-over-100",
                conv.AGENTLEDGER_POLICY_DECISION: conv.PolicyDecisionValues.REVIEW,
                conv.AGENTLEDGER_POLICY_REASON: "Amount 240.00 EUR exceeds auto-refund limit 100.00 EUR",
            },
        ):
            time.sleep(0.001)

    # Trace 2: the run resumes once a human decided; the approval span covers request to decision.
    with tracer.start_as_current_span(
        "invoke_agent refund-agent",
        attributes={
            **run_attributes,
            conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.RUN,
            conv.GEN_AI_OPERATION_NAME: "invoke_agent",
            conv.AGENTLEDGER_RUN_OUTCOME: conv.RunOutcomeValues.SUCCESS,
        },
    ):
        with tracer.start_as_current_span(
            "approval issue_refund",
            attributes={
                **run_attributes,
                conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.APPROVAL,
                conv.AGENTLEDGER_APPROVAL_DECISION: conv.ApprovalDecisionValues.APPROVED,
                conv.AGENTLEDGER_APPROVAL_APPROVER: "user:maria.lopez",
                conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID: "call_refund_1",
                conv.GEN_AI_TOOL_NAME: "issue_refund",
            },
        ):
            time.sleep(0.001)
        with (
            tracer.start_as_current_span(
                "execute_tool issue_refund",
                attributes={
                    **run_attributes,
                    conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.TOOL_CALL,
                    conv.GEN_AI_OPERATION_NAME: "execute_tool",
                    conv.GEN_AI_TOOL_NAME: "issue_refund",
                    conv.GEN_AI_TOOL_CALL_ID: "call_refund_1",
                    conv.AGENTLEDGER_TOOL_ACCESS: conv.ToolAccessValues.WRITE,
                    conv.AGENTLEDGER_TOOL_TARGET: "crm:customer/C-88123",
                    conv.AGENTLEDGER_TOOL_ARGUMENTS_HASH: context_hash(arguments),
                    conv.AGENTLEDGER_TOOL_INFLUENCED_BY: [conv.InputProvenanceValues.USER_PROVIDED.value],
                    conv.GEN_AI_TOOL_CALL_ARGUMENTS: json.dumps(arguments),
                },
            ),
            tracer.start_as_current_span(
                "write stripe",
                kind=SpanKind.CLIENT,
                attributes={
                    **run_attributes,
                    conv.AGENTLEDGER_SPAN_TYPE: conv.SpanTypeValues.DOWNSTREAM_WRITE,
                    conv.AGENTLEDGER_WRITE_SYSTEM: "stripe",
                    conv.AGENTLEDGER_WRITE_REF: "stripe:refund/re_3QdemoRefund",
                    conv.AGENTLEDGER_WRITE_ACTION: conv.WriteActionValues.TRANSFER,
                    conv.AGENTLEDGER_WRITE_TOOL_CALL_ID: "call_refund_1",
                    conv.AGENTLEDGER_TOOL_TARGET: "crm:customer/C-88123",
                },
            ),
        ):
            time.sleep(0.001)
