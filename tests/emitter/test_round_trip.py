"""Emitter spans through the SDK's OTLP exporter and the real `agentledger up` into typed timeline entries,
whose hashes equal those recomputed here from the steps of schema/CONTEXT_HASH.md (not the emitter's code)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest

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
from tests.conftest import RunningService, sdk_tracer_provider, wait_for_timeline

pytestmark = pytest.mark.slow

RUN_ID = "run_round_trip_0001"
# Keys that sort differently by code point and by UTF-16 code unit (U+1F600 vs U+FB33), numbers whose
# JSON text differs between languages, and characters that need escaping.
CONTEXT: dict[str, Any] = {
    "ticket": {"key": "SUP-4411", "text": 'Blender "X2" arrived broken\nRefund 240 €\u0007'},
    "\ufb33": "dalet",
    "\U0001f600": "grinning",
    "amounts": [240.0, 0.1 + 0.2, 1e21, 1e-7, -0.0, 5e-324, 333333333.33333329],
    "policy": {"id": "refunds.max-amount", "limit": 100, "auto": True, "note": None},
}
ARGUMENTS: dict[str, Any] = {"order_id": "A-1001", "amount": 240.0, "currency": "EUR", "customer": "C-88123"}


# --- The documented algorithm, step by step (schema/CONTEXT_HASH.md) --------------------------------


def _number(value: float) -> str:
    if value == 0:
        return "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)
    text = (
        digits + "0" * (n - k) if k <= n <= 21
        else digits[:n] + "." + digits[n:] if 0 < n <= 21
        else "0." + "0" * -n + digits if -6 < n <= 0
        else digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if n - 1 >= 0 else "-") + str(abs(n - 1))
    )  # fmt: skip
    return ("-" if value < 0 else "") + text


def _string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    return '"' + "".join(escapes.get(c, f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in text) + '"'


def _jcs(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return _number(float(value))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(_jcs(item) for item in value) + "]"
    utf16_units = sorted(
        value,
        key=lambda key: [
            int.from_bytes(key.encode("utf-16-be")[i : i + 2]) for i in range(0, len(key.encode("utf-16-be")), 2)
        ],
    )
    return "{" + ",".join(_string(key) + ":" + _jcs(value[key]) for key in utf16_units) + "}"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def documented_hash(value: Any) -> str:
    return "sha256:" + hashlib.sha256(_jcs(value).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------------


def test_the_documented_steps_match_the_rfc_example() -> None:
    # Guards the recomputation itself with RFC 8785's section 3.2.2 example.
    value = {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 1e-27], "literals": [None, True, False]}
    assert _jcs(value) == '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}'


def _send_run(collector_url: str) -> None:
    provider = sdk_tracer_provider(collector_url, service_name="refund-agent")
    messages = [{"role": "user", "content": CONTEXT["ticket"]["text"]}]
    run = agent_run(
        "refund-agent-1",
        agent_name="refund-agent",
        run_id=RUN_ID,
        task="Refund request SUP-4411",
        capture=ContentCapture.FULL,
        tracer_provider=provider,
    )
    with run:
        with retrieval(
            "zendesk", provenance=conv.InputProvenanceValues.USER_PROVIDED, source="zendesk://tickets/4411"
        ) as found:
            found.set_documents([Document("SUP-4411", CONTEXT["ticket"]["text"], 1.0)])
        with prompt("gpt-4.1-mini", messages, context=CONTEXT, context_sources=["SUP-4411"]) as call:  # type: ignore[arg-type]
            call.record_response(
                [{"role": "assistant", "content": "Needs approval."}], input_tokens=900, output_tokens=12
            )
        with policy_decision("refunds.max-amount", conv.PolicyDecisionValues.REVIEW, rule_id="amount-over-100"):
            pass
        run.set_outcome(conv.RunOutcomeValues.ESCALATED)
    # The run resumes in a second trace once a human approved.
    with agent_run("refund-agent-1", agent_name="refund-agent", run_id=RUN_ID, capture=ContentCapture.FULL,
                   tracer_provider=provider) as resumed:  # fmt: skip
        with approval("issue_refund", tool_call_id="call_rt_1", arguments=ARGUMENTS) as request:
            request.decide(conv.ApprovalDecisionValues.APPROVED, "user:maria.lopez")
        with tool_call(
            "issue_refund",
            access=conv.ToolAccessValues.WRITE,
            arguments=ARGUMENTS,
            target="crm:customer/C-88123",
            call_id="call_rt_1",
            influenced_by=[conv.InputProvenanceValues.USER_PROVIDED],
        ) as refund:
            with downstream_write(
                "stripe",
                action=conv.WriteActionValues.TRANSFER,
                tool_call_id="call_rt_1",
                target="crm:customer/C-88123",
            ) as write:
                write.set_ref("stripe:refund/re_rt_1")
            refund.set_result({"refund_id": "re_rt_1"})
        resumed.set_outcome(conv.RunOutcomeValues.SUCCESS)
    provider.shutdown()


def test_emitter_spans_round_trip_into_typed_entries_with_recomputable_hashes(service: RunningService) -> None:
    _send_run(service.collector_url)

    body = wait_for_timeline(service.api_url, RUN_ID, entries=8)

    entries = body["entries"]
    assert [(entry["type"], entry["name"]) for entry in entries] == [
        ("run", "invoke_agent refund-agent"),
        ("retrieval", "retrieval zendesk"),
        ("prompt", "chat gpt-4.1-mini"),
        ("policy_decision", "policy refunds.max-amount"),
        ("run", "invoke_agent refund-agent"),
        ("approval", "approval issue_refund"),
        ("tool_call", "execute_tool issue_refund"),
        ("downstream_write", "write stripe"),
    ]
    by_type = {entry["type"]: entry["details"] for entry in entries}
    assert len(body["run"]["trace_ids"]) == 2
    assert body["run"]["outcome"] == "success"

    ticket_text = CONTEXT["ticket"]["text"]
    expected_context_hash = documented_hash(CONTEXT)
    expected_arguments_hash = documented_hash(ARGUMENTS)
    assert by_type["prompt"]["context_hash"] == expected_context_hash
    assert by_type["tool_call"]["arguments_hash"] == expected_arguments_hash
    # The approval names the hash of the arguments it approved: the same as the executed call's.
    assert by_type["approval"]["arguments_hash"] == expected_arguments_hash

    assert by_type["prompt"] == {
        "operation": "chat",
        "model": "gpt-4.1-mini",
        "context_hash": expected_context_hash,
        "context_sources": '["SUP-4411"]',
        "input_tokens": 900,
        "output_tokens": 12,
        "input_messages": _compact([{"role": "user", "parts": [{"type": "text", "content": ticket_text}]}]),
        "output_messages": '[{"role":"assistant","parts":[{"type":"text","content":"Needs approval."}]}]',
        "input": _compact({"messages": [{"role": "user", "content": ticket_text}]}),
        "output": '{"messages":[{"role":"assistant","content":"Needs approval."}]}',
    }
    assert by_type["retrieval"] == {
        "data_source": "zendesk",
        "provenance": "user_provided",
        "documents": _compact([{"id": "SUP-4411", "score": 1.0, "content": ticket_text}]),
    }
    assert by_type["tool_call"] == {
        "tool_name": "issue_refund",
        "tool_call_id": "call_rt_1",
        "access": "write",
        "target": "crm:customer/C-88123",
        "arguments_hash": expected_arguments_hash,
        "influenced_by": '["user_provided"]',
        "arguments": '{"order_id":"A-1001","amount":240.0,"currency":"EUR","customer":"C-88123"}',
        "result": '{"refund_id":"re_rt_1"}',
        "input": '{"order_id":"A-1001","amount":240.0,"currency":"EUR","customer":"C-88123"}',
        "output": '{"refund_id":"re_rt_1"}',
    }
    assert by_type["approval"] == {
        "decision": "approved",
        "approver": "user:maria.lopez",
        "tool_name": "issue_refund",
        "tool_call_id": "call_rt_1",
        "arguments_hash": expected_arguments_hash,
    }
    assert by_type["policy_decision"] == {
        "policy_id": "refunds.max-amount",
        "rule_id": "amount-over-100",
        "decision": "review",
    }
    assert by_type["downstream_write"] == {
        "system": "stripe",
        "ref": "stripe:refund/re_rt_1",
        "action": "transfer",
        "tool_call_id": "call_rt_1",
        "target": "crm:customer/C-88123",
    }
