"""Links a run's downstream writes to the tool calls that made them, and audits the run.

Checks (each a Finding.check):
- unaccounted_write: a downstream write that no tool call of the run accounts for;
- unconfirmed_write_call: a write tool call with no downstream write confirming it;
- missing_approval: a write tool call without the approval the run's autonomy level requires;
- untrusted_influence: a write tool call shaped by user-provided or retrieved input with no
  validation (a policy `allow` after that input) or approval in between.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from agentledger.query_api import queries
from agentledger.query_api.models import Audit, Finding, LinkedWrite, ToolCallRef, WriteRecord
from agentledger.query_api.times import rfc3339_nanos
from agentledger.schema import conventions as conv

CHECKS: Final = ("unaccounted_write", "unconfirmed_write_call", "missing_approval", "untrusted_influence")

# A write reported by its system is matched to a tool call on the same target if it happened within
# this window around the call (systems stamp their own clocks, and some report after a queue).
LINK_WINDOW_NS: Final = 300 * 1_000_000_000

UNTRUSTED: Final = frozenset({"user_provided", "retrieved"})

# The attributes linking and the audit read beyond the typed columns.
FACT_KEYS: Final = (
    conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL,
    conv.AGENTLEDGER_TOOL_INFLUENCED_BY,
    conv.AGENTLEDGER_INPUT_TRUSTED,
    conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID,
    conv.AGENTLEDGER_WRITE_TOOL_CALL_ID,
)


@dataclass(frozen=True)
class SpanFact:
    """What linking and auditing need of one span."""

    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    name: str
    entry_type: str
    status: str
    provenance: str
    tool_name: str
    tool_call_id: str
    tool_access: str
    target: str
    approval_decision: str
    policy_decision: str
    write_system: str
    write_ref: str
    attributes: Mapping[str, str]

    @property
    def is_write_call(self) -> bool:
        return self.entry_type == "tool_call" and self.tool_access == "write"

    @property
    def influenced_by(self) -> list[str]:
        raw = self.attributes.get(conv.AGENTLEDGER_TOOL_INFLUENCED_BY, "")
        try:
            value = json.loads(raw) if raw.startswith("[") else [raw] if raw else []
        except ValueError:
            return [raw]
        return [str(item) for item in value] if isinstance(value, list) else [str(value)]

    @property
    def untrusted_input(self) -> bool:
        """An input span (retrieval, prompt, ...) carrying untrusted content not marked trusted."""
        return (
            self.provenance in UNTRUSTED
            and not self.is_write_call
            and self.attributes.get(conv.AGENTLEDGER_INPUT_TRUSTED, "").lower() != "true"
        )


def span_fact(row: Mapping[str, Any]) -> SpanFact:
    return SpanFact(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        start_ns=int(row["start_ns"]),
        end_ns=int(row["end_ns"]),
        name=row["name"],
        entry_type=row["entry_type"],
        status=row["status_code"],
        provenance=row["provenance"],
        tool_name=row["tool_name"],
        tool_call_id=row["tool_call_id"],
        tool_access=row["tool_access"],
        target=row["target"],
        approval_decision=row["approval_decision"],
        policy_decision=row["policy_decision"],
        write_system=row["write_system"],
        write_ref=row["write_ref"],
        attributes={key: row["attributes"][key] for key in FACT_KEYS if key in row["attributes"]},
    )


def load_span_facts(
    client: Client, tenant: str, run_id: str, trace_ids: Sequence[str], from_ns: int, to_ns: int
) -> list[SpanFact]:
    result = client.query(
        queries.RUN_FACT_SPANS,
        parameters={
            "tenant": tenant,
            "run_id": run_id,
            "trace_ids": list(trace_ids),
            "from_ns": from_ns,
            "to_ns": to_ns,
            "fact_keys": list(FACT_KEYS),
        },
    )
    return [span_fact(row) for row in result.named_results()]


def _tool_call_ref(span: SpanFact, link: str) -> ToolCallRef:
    return ToolCallRef(
        trace_id=span.trace_id,
        span_id=span.span_id,
        name=span.name,
        tool_name=span.tool_name,
        tool_call_id=span.tool_call_id,
        start_time=rfc3339_nanos(span.start_ns),
        link=link,
    )


def _write_span_call(write_span: SpanFact, spans: Sequence[SpanFact]) -> SpanFact | None:
    """The tool call a downstream_write span belongs to: by its tool call id, else its nearest tool-call ancestor."""
    by_call_id = write_span.attributes.get(conv.AGENTLEDGER_WRITE_TOOL_CALL_ID, "")
    calls = [s for s in spans if s.entry_type == "tool_call"]
    if by_call_id:
        for call in calls:
            if call.tool_call_id == by_call_id:
                return call
    by_span_id = {s.span_id: s for s in spans}
    ancestor = by_span_id.get(write_span.parent_span_id)
    while ancestor is not None:
        if ancestor.entry_type == "tool_call":
            return ancestor
        ancestor = by_span_id.get(ancestor.parent_span_id)
    return None


def link_write(write: WriteRecord, spans: Sequence[SpanFact]) -> ToolCallRef | None:
    """The tool call that made a write: by tool call id, else a write span with the same ref, else target and time."""
    calls = [s for s in spans if s.entry_type == "tool_call"]
    if write.tool_call_id:
        for call in calls:
            if call.tool_call_id == write.tool_call_id:
                return _tool_call_ref(call, "tool_call_id")
    for span in spans:
        if span.entry_type == "downstream_write" and span.write_ref == write.ref:
            maker = _write_span_call(span, spans)
            if maker is not None:
                return _tool_call_ref(maker, "write_span")
    if write.target:
        at = write.occurred_unix_nano
        near = [
            c
            for c in calls
            if c.is_write_call
            and c.target == write.target
            and c.start_ns - LINK_WINDOW_NS <= at <= c.end_ns + LINK_WINDOW_NS
        ]
        if near:
            closest = min(near, key=lambda c: abs(at - c.start_ns))
            return _tool_call_ref(closest, "target_time")
    return None


def link_writes(writes: Iterable[WriteRecord], spans: Sequence[SpanFact]) -> list[LinkedWrite]:
    return [LinkedWrite(write=write, tool_call=link_write(write, spans)) for write in writes]


def autonomy_level(spans: Iterable[SpanFact]) -> str:
    for span in spans:
        level = span.attributes.get(conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL, "")
        if level:
            return level
    return ""


def _approvals_for(call: SpanFact, spans: Sequence[SpanFact]) -> list[SpanFact]:
    """Approval spans before the call that govern it (by tool call id, else by tool name)."""
    found = []
    for span in spans:
        if span.entry_type != "approval" or span.start_ns > call.start_ns:
            continue
        governed = span.attributes.get(conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID, "")
        if (governed and governed == call.tool_call_id) or (not governed and span.tool_name == call.tool_name):
            found.append(span)
    return found


def _approved(call: SpanFact, spans: Sequence[SpanFact], accept_auto: bool) -> bool:
    approvals = _approvals_for(call, spans)
    if not approvals:
        return False
    # The latest decision before the call is the one in force.
    decision = max(approvals, key=lambda s: s.start_ns).approval_decision
    return decision == "approved" or (accept_auto and decision == "auto_approved")


def _high_risk(call: SpanFact, spans: Sequence[SpanFact]) -> bool:
    """A policy before the call asked for review or escalation (or blocked, and the call happened anyway)."""
    return any(
        s.entry_type == "policy_decision"
        and s.policy_decision in ("review", "escalate", "block")
        and s.start_ns <= call.start_ns
        for s in spans
    )


def _approval_finding(call: SpanFact, spans: Sequence[SpanFact], level: str) -> str | None:
    named = level or "unset (treated as approve_writes)"
    if level == "autonomous":
        return None
    if level == "suggest_only":
        return f"write tool call {call.tool_name!r} in a run whose autonomy level is suggest_only"
    if level == "approve_high_risk":
        if _high_risk(call, spans) and not _approved(call, spans, accept_auto=False):
            return (
                f"write tool call {call.tool_name!r} was flagged by a policy for review but has no human approval"
                " (autonomy level approve_high_risk)"
            )
        return None
    if not _approved(call, spans, accept_auto=False):
        return f"write tool call {call.tool_name!r} has no approval; autonomy level {named} requires one"
    return None


def _untrusted_finding(call: SpanFact, spans: Sequence[SpanFact]) -> str | None:
    declared = sorted(set(call.influenced_by) & UNTRUSTED)
    earlier = [s for s in spans if s.untrusted_input and s.start_ns <= call.start_ns]
    if not declared and not earlier:
        return None
    last_untrusted_ns = max((s.start_ns for s in earlier), default=0)
    validated = any(
        s.entry_type == "policy_decision"
        and s.policy_decision == "allow"
        and last_untrusted_ns <= s.start_ns <= call.start_ns
        for s in spans
    )
    if validated or _approved(call, spans, accept_auto=False):
        return None
    sources = ", ".join(declared) if declared else ", ".join(sorted({f"{s.provenance} ({s.name})" for s in earlier}))
    return (
        f"write tool call {call.tool_name!r} was influenced by untrusted input ({sources})"
        " with no validation or approval"
    )


def audit_run(run_id: str, spans: Sequence[SpanFact], linked: Sequence[LinkedWrite]) -> Audit:
    findings: list[Finding] = []
    for item in linked:
        if item.tool_call is None:
            findings.append(
                Finding(
                    check="unaccounted_write",
                    severity="high",
                    message=(
                        f"{item.write.system} {item.write.action} {item.write.ref} has no matching tool call in the run"
                    ),
                    span_id="",
                    tool_call_id=item.write.tool_call_id,
                    write_ref=item.write.ref,
                )
            )
    confirmed = {item.tool_call.span_id for item in linked if item.tool_call is not None}
    level = autonomy_level(spans)
    for call in (s for s in spans if s.is_write_call):

        def finding(check: str, severity: str, message: str, call: SpanFact = call) -> Finding:
            return Finding(
                check=check,
                severity=severity,
                message=message,
                span_id=call.span_id,
                tool_call_id=call.tool_call_id,
                write_ref="",
            )

        if call.span_id not in confirmed and call.status != "ERROR":
            findings.append(
                finding(
                    "unconfirmed_write_call",
                    "medium",
                    f"write tool call {call.tool_name!r} has no downstream write confirming it",
                )
            )
        approval = _approval_finding(call, spans, level)
        if approval is not None:
            findings.append(finding("missing_approval", "high", approval))
        untrusted = _untrusted_finding(call, spans)
        if untrusted is not None:
            findings.append(finding("untrusted_influence", "high", untrusted))
    return Audit(run_id=run_id, autonomy_level=level, checks=list(CHECKS), findings=findings)
