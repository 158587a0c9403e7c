"""Seeds runs with known outcomes, costs and timings through the real ingest path (OTel SDK spans ->
OTLP decode -> ClickHouse exporter), and downstream writes and annotations as rows, for the metrics,
blast-radius, eval and dashboard tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer, set_span_in_context

from agentledger.collector.exporters.clickhouse import ClickHouseExporter
from agentledger.collector.receivers.otlp_decode import Identity, decode_request
from agentledger.schema import conventions as conv

SECOND = 1_000_000_000
HOUR = 3_600 * SECOND
# 2026-11-20T10:00:00Z
T0 = 1_795_168_800 * SECOND

AttributeValue = str | int | float


@dataclass(frozen=True)
class Child:
    """One span inside a run: its type, offset from the run start, duration and attributes."""

    span_type: str
    offset_ns: int
    duration_ns: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    run_id: str
    agent_id: str
    start_ns: int
    duration_ns: int
    outcome: str = ""
    workflow: str = ""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    children: Sequence[Child] = ()


def prompt(offset_s: float, model: str, input_tokens: int, output_tokens: int) -> Child:
    return Child(
        "prompt",
        int(offset_s * SECOND),
        SECOND // 10,
        {
            conv.GEN_AI_REQUEST_MODEL: model,
            conv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            conv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        },
    )


def write_call(
    offset_s: float, target: str, amount: float | None = None, cost: float | None = None, access: str = "write"
) -> Child:
    attributes: dict[str, AttributeValue] = {
        conv.GEN_AI_TOOL_NAME: "issue_refund",
        conv.AGENTLEDGER_TOOL_ACCESS: access,
        conv.AGENTLEDGER_TOOL_TARGET: target,
    }
    if amount is not None:
        attributes[conv.AGENTLEDGER_TOOL_AMOUNT] = amount
    if cost is not None:
        attributes[conv.AGENTLEDGER_TOOL_COST] = cost
    return Child("tool_call", int(offset_s * SECOND), SECOND // 10, attributes)


def approval(offset_s: float, decision: str, waited_s: float) -> Child:
    return Child(
        "approval",
        int(offset_s * SECOND),
        int(waited_s * SECOND),
        {
            conv.AGENTLEDGER_APPROVAL_DECISION: decision,
            conv.AGENTLEDGER_APPROVAL_APPROVER: "user:maria.lopez",
        },
    )


def policy(offset_s: float, policy_id: str, rule_id: str, decision: str) -> Child:
    return Child(
        "policy_decision",
        int(offset_s * SECOND),
        SECOND // 100,
        {
            conv.AGENTLEDGER_POLICY_ID: policy_id,
            conv.AGENTLEDGER_POLICY_RULE_ID: rule_id,
            conv.AGENTLEDGER_POLICY_DECISION: decision,
        },
    )


def _emit(tracer: Tracer, run: Run) -> None:
    attributes: dict[str, AttributeValue] = {
        conv.AGENT_RUN_ID: run.run_id,
        conv.AGENTLEDGER_SPAN_TYPE: "run",
        conv.GEN_AI_AGENT_ID: run.agent_id,
        **run.attributes,
    }
    if run.outcome:
        attributes[conv.AGENTLEDGER_RUN_OUTCOME] = run.outcome
    if run.workflow:
        attributes[conv.GEN_AI_WORKFLOW_NAME] = run.workflow
    root = tracer.start_span(f"invoke_agent {run.agent_id}", attributes=attributes, start_time=run.start_ns)
    context = set_span_in_context(root)
    for child in run.children:
        span = tracer.start_span(
            child.span_type,
            context=context,
            start_time=run.start_ns + child.offset_ns,
            attributes={
                conv.AGENT_RUN_ID: run.run_id,
                conv.AGENTLEDGER_SPAN_TYPE: child.span_type,
                conv.GEN_AI_AGENT_ID: run.agent_id,
                **child.attributes,
            },
        )
        span.end(end_time=run.start_ns + child.offset_ns + child.duration_ns)
    root.end(end_time=run.start_ns + run.duration_ns)


def seed_runs(client: Client, runs: Sequence[Run], tenant: str = "default", verified_agent: str = "") -> None:
    """Stores the runs as the receiver would: `verified_agent` is the agent the sender's token proves
    (empty: received without authentication)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.metrics")
    for run in runs:
        _emit(tracer, run)
    batch = decode_request(encode_spans(exporter.get_finished_spans()), Identity(tenant, verified_agent)).batch
    ClickHouseExporter(client).export(batch, f"seed:{runs[0].run_id}:{len(runs)}:{verified_agent}")


@dataclass(frozen=True)
class Write:
    run_id: str
    system: str
    ref: str
    target: str
    at_ns: int
    action: str = "create"


def seed_writes(client: Client, writes: Sequence[Write], tenant: str = "default") -> None:
    # Nanoseconds go in through fromUnixTimestamp64Nano: clickhouse-connect would cut datetimes to µs.
    for w in writes:
        client.command(
            "INSERT INTO writes (tenant, run_id, system, ref, action, target, occurred_at) VALUES"
            " ({tenant:String}, {run_id:String}, {system:String}, {ref:String}, {action:String}, {target:String},"
            " fromUnixTimestamp64Nano({at:Int64}))",
            parameters={
                "tenant": tenant,
                "run_id": w.run_id,
                "system": w.system,
                "ref": w.ref,
                "action": w.action,
                "target": w.target,
                "at": w.at_ns,
            },
        )


def seed_annotation(client: Client, run_id: str, name: str, label: str, at_ns: int, tenant: str = "default") -> None:
    client.command(
        "INSERT INTO annotations (tenant, run_id, annotation_id, name, label, created_at, updated_at) VALUES"
        " ({tenant:String}, {run_id:String}, {id:String}, {name:String}, {label:String},"
        " fromUnixTimestamp64Nano({at:Int64}), fromUnixTimestamp64Nano({at:Int64}))",
        parameters={
            "tenant": tenant,
            "run_id": run_id,
            "id": f"{run_id}:{name}:{at_ns}",
            "name": name,
            "label": label,
            "at": at_ns,
        },
    )
