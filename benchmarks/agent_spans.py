"""Seeded, realistic agent traffic as OTLP requests: runs of 20-50 spans (prompts, retrievals, tool calls,
approvals, policy decisions, writes) carrying 0.5-4 KB of prompt/tool content each."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from agentledger.schema import conventions as conv

_WORDS = [
    "refund",
    "order",
    "customer",
    "ticket",
    "damaged",
    "shipping",
    "invoice",
    "amount",
    "policy",
    "approve",
    "escalate",
    "account",
    "payment",
    "card",
    "delivery",
    "warehouse",
    "return",
    "label",
    "credit",
    "note",
    "reconcile",
    "ledger",
    "vendor",
    "contract",
]


def _text(rng: random.Random, size: int) -> str:
    words = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _run_spans(rng: random.Random, run_index: int, start_ns: int) -> list[Span]:
    run_id = f"run_bench_{run_index:08d}"
    trace_id = rng.getrandbits(128).to_bytes(16, "big")
    agent = rng.choice(("refund-agent", "coding-agent", "invoice-agent"))
    common = [
        _kv(conv.AGENT_RUN_ID, run_id),
        _kv(conv.GEN_AI_AGENT_ID, f"{agent}-prod-1"),
        _kv(conv.GEN_AI_AGENT_NAME, agent),
    ]
    root_id = rng.getrandbits(64).to_bytes(8, "big")
    spans = [
        Span(
            trace_id=trace_id,
            span_id=root_id,
            name=f"invoke_agent {agent}",
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start_ns,
            end_time_unix_nano=start_ns + 5_000_000_000,
            attributes=[
                *common,
                _kv(conv.AGENTLEDGER_SPAN_TYPE, "run"),
                _kv(conv.GEN_AI_OPERATION_NAME, "invoke_agent"),
                _kv(conv.INPUT_VALUE, _text(rng, rng.randint(500, 4000))),
            ],
        )
    ]
    time_ns = start_ns
    for _ in range(rng.randint(19, 49)):
        time_ns += rng.randint(1_000_000, 50_000_000)
        kind = rng.choices(("prompt", "retrieval", "tool_call", "approval", "policy_decision"), (5, 2, 4, 1, 1))[0]
        attributes = [*common, _kv(conv.AGENTLEDGER_SPAN_TYPE, kind)]
        content = _text(rng, rng.randint(500, 4000))
        if kind == "prompt":
            name = "chat gpt-4.1-mini"
            attributes += [
                _kv(conv.GEN_AI_OPERATION_NAME, "chat"),
                _kv(conv.GEN_AI_REQUEST_MODEL, "gpt-4.1-mini"),
                _kv(conv.GEN_AI_USAGE_INPUT_TOKENS, rng.randint(200, 4000)),
                _kv(conv.GEN_AI_USAGE_OUTPUT_TOKENS, rng.randint(20, 800)),
                _kv(conv.AGENTLEDGER_PROMPT_CONTEXT_HASH, f"sha256:{rng.getrandbits(256):064x}"),
                _kv(conv.GEN_AI_INPUT_MESSAGES, json.dumps([{"role": "user", "content": content}])),
            ]
        elif kind == "retrieval":
            name = "retrieval kb"
            attributes += [
                _kv(conv.GEN_AI_OPERATION_NAME, "retrieval"),
                _kv(conv.GEN_AI_DATA_SOURCE_ID, "kb"),
                _kv(conv.AGENTLEDGER_INPUT_PROVENANCE, "retrieved"),
                _kv(conv.GEN_AI_RETRIEVAL_DOCUMENTS, json.dumps([{"id": "kb:1", "content": content}])),
            ]
        elif kind == "tool_call":
            tool = rng.choice(("lookup_order", "issue_refund", "update_ticket"))
            name = f"execute_tool {tool}"
            attributes += [
                _kv(conv.GEN_AI_OPERATION_NAME, "execute_tool"),
                _kv(conv.GEN_AI_TOOL_NAME, tool),
                _kv(conv.AGENTLEDGER_TOOL_ACCESS, "read" if tool == "lookup_order" else "write"),
                _kv(conv.AGENTLEDGER_TOOL_TARGET, f"crm:customer/C-{rng.randint(1, 99999)}"),
                _kv(conv.GEN_AI_TOOL_CALL_ARGUMENTS, json.dumps({"note": content[:1000]})),
                _kv(conv.GEN_AI_TOOL_CALL_RESULT, content[1000:]),
            ]
        elif kind == "approval":
            name = "approval issue_refund"
            attributes += [
                _kv(conv.AGENTLEDGER_APPROVAL_DECISION, "approved"),
                _kv(conv.AGENTLEDGER_APPROVAL_APPROVER, "user:ops"),
                _kv("note", content),
            ]
        else:
            name = "policy refunds.max-amount"
            attributes += [
                _kv(conv.AGENTLEDGER_POLICY_ID, "refunds.max-amount"),
                _kv(conv.AGENTLEDGER_POLICY_DECISION, "allow"),
                _kv("reason", content),
            ]
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=rng.getrandbits(64).to_bytes(8, "big"),
                parent_span_id=root_id,
                name=name,
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=time_ns,
                end_time_unix_nano=time_ns + rng.randint(1_000_000, 900_000_000),
                attributes=attributes,
            )
        )
    return spans


def request_bodies(total_spans: int, spans_per_request: int = 1000, seed: int = 7) -> Iterator[tuple[int, bytes]]:
    """(span count, serialized ExportTraceServiceRequest) until about total_spans spans were produced."""
    rng = random.Random(seed)
    resource = Resource(attributes=[_kv("service.name", "bench-agents")])
    produced = run_index = 0
    pending: list[Span] = []
    start_ns = 1_764_000_000_000_000_000
    while produced < total_spans:
        pending += _run_spans(rng, run_index, start_ns + run_index * 1_000_000_000)
        run_index += 1
        while len(pending) >= spans_per_request or (pending and produced + len(pending) >= total_spans):
            chunk, pending = pending[:spans_per_request], pending[spans_per_request:]
            request = ExportTraceServiceRequest(
                resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=chunk)])]
            )
            produced += len(chunk)
            yield len(chunk), request.SerializeToString()
            if produced >= total_spans:
                return
