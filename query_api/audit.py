"""Audits a run: links its downstream writes to the tool calls that made them, then evaluates the rules
(query_api/rules.py) over its spans, with the tenant's tool catalogue in place of what agents declare.

Pure functions over SpanFact and WriteRecord values; the store (query_api/store/runs.py) loads them. Where
a run lacks a convention a rule needs (a policy decision naming its call, the run's subjects, a tool result's
trust), the rule infers and its finding says so.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agentledger.query_api.audit_config import (
    AuditConfig,
    JsonValue,
    ToolCatalogue,
    ToolEntry,
    UserRule,
    scalar_text,
)
from agentledger.query_api.models import (
    ApprovalChain,
    Audit,
    ChainDecision,
    Finding,
    LinkedWrite,
    RuleInfo,
    ToolCallRef,
    WriteRecord,
)
from agentledger.query_api.rules import BUILTIN_RULES, Rule
from agentledger.query_api.times import rfc3339_nanos
from agentledger.schema import conventions as conv

# A write reported by its system is matched to a tool call on the same target if it happened within
# this window around the call (systems stamp their own clocks, and some report after a queue).
LINK_WINDOW_NS: Final = 300 * 1_000_000_000

UNTRUSTED: Final = frozenset({"user_provided", "retrieved", "tool_output"})
WRITING: Final = frozenset({"write", "destructive"})

# The attributes linking and the audit read beyond the typed columns.
FACT_KEYS: Final = (
    conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL,
    conv.AGENTLEDGER_RUN_TASK,
    conv.AGENTLEDGER_RUN_SUBJECTS,
    conv.AGENTLEDGER_RUN_REQUESTER,
    conv.AGENTLEDGER_TOOL_INFLUENCED_BY,
    conv.AGENTLEDGER_TOOL_ATTEMPT,
    conv.AGENTLEDGER_TOOL_RESULT_TRUST,
    conv.AGENTLEDGER_INPUT_TRUSTED,
    conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID,
    conv.AGENTLEDGER_APPROVAL_REASON,
    conv.AGENTLEDGER_POLICY_TOOL_CALL_ID,
    conv.AGENTLEDGER_POLICY_TOOL_NAME,
    conv.AGENTLEDGER_POLICY_ARGUMENTS_HASH,
    conv.AGENTLEDGER_POLICY_RULE_ID,
    conv.AGENTLEDGER_WRITE_TOOL_CALL_ID,
    conv.AGENTLEDGER_WRITE_ACTION,
)

_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_URL: Final = re.compile(r"https?://[^\s\"'<>]+")
# Ids named in free text (SUP-4415, C-20931, A-1077, INV-2026-1181): what the task text is about.
_ID_IN_TEXT: Final = re.compile(r"\b[A-Z]{1,6}-\d[\dA-Z\-]*\b")
_MAX_VALUE_CHARS: Final = 128


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
    run_id: str = ""
    agent_id: str = ""
    approver: str = ""
    policy_id: str = ""
    arguments_hash: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    # Content (empty when not captured or redacted away).
    tool_arguments: str = ""
    tool_result: str = ""
    retrieval_documents: str = ""
    input_value: str = ""
    output_value: str = ""

    @property
    def is_write_call(self) -> bool:
        """Declared a write by the agent (the audit's own view, with the catalogue, is CallView.access)."""
        return self.entry_type == "tool_call" and self.tool_access in WRITING

    @property
    def influenced_by(self) -> list[str]:
        return _string_list(self.attributes.get(conv.AGENTLEDGER_TOOL_INFLUENCED_BY, ""))

    @property
    def untrusted_input(self) -> bool:
        """An input span carrying untrusted content not marked trusted: a retrieval or prompt with untrusted
        provenance, or a tool call whose result is marked external."""
        if self.attributes.get(conv.AGENTLEDGER_INPUT_TRUSTED, "").lower() == "true":
            return False
        if self.entry_type == "tool_call":
            return self.attributes.get(conv.AGENTLEDGER_TOOL_RESULT_TRUST, "") == "external"
        return self.provenance in UNTRUSTED

    @property
    def content(self) -> str:
        """What the span brought into the run (documents, results, outputs)."""
        return "\n".join(text for text in (self.retrieval_documents, self.tool_result, self.output_value) if text)


def _string_list(raw: str) -> list[str]:
    try:
        value = json.loads(raw) if raw.startswith("[") else [raw] if raw else []
    except ValueError:
        return [raw]
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def span_fact(row: Mapping[str, Any]) -> SpanFact:
    def text(name: str) -> str:
        return str(row.get(name) or "")

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
        run_id=text("run_id"),
        agent_id=text("agent_id"),
        approver=text("approver"),
        policy_id=text("policy_id"),
        arguments_hash=text("arguments_hash"),
        input_tokens=int(row.get("input_tokens") or 0),
        output_tokens=int(row.get("output_tokens") or 0),
        tool_arguments=text("tool_arguments"),
        tool_result=text("tool_result"),
        retrieval_documents=text("retrieval_documents"),
        input_value=text("input_value"),
        output_value=text("output_value"),
    )


# --- Linking writes to tool calls ------------------------------------------------------------------------


def _tool_call_ref(span: SpanFact, link: str) -> ToolCallRef:
    return ToolCallRef(
        trace_id=span.trace_id,
        span_id=span.span_id,
        name=span.name,
        tool_name=span.tool_name,
        tool_call_id=span.tool_call_id,
        start_time=rfc3339_nanos(span.start_ns),
        link=link,
        inferred=link == "target_time",
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


def _proven_link(write: WriteRecord, spans: Sequence[SpanFact]) -> ToolCallRef | None:
    """The tool call a write names by tool call id, or whose write span carries the write's ref."""
    if write.tool_call_id:
        for call in spans:
            if call.entry_type == "tool_call" and call.tool_call_id == write.tool_call_id:
                return _tool_call_ref(call, "tool_call_id")
    for span in spans:
        if span.entry_type == "downstream_write" and span.write_ref == write.ref:
            maker = _write_span_call(span, spans)
            if maker is not None:
                return _tool_call_ref(maker, "write_span")
    return None


def _inferred_link(write: WriteRecord, calls: Sequence[SpanFact]) -> ToolCallRef | None:
    """A write call on the same target near the write's time: a guess, shown as such."""
    if not write.target:
        return None
    at = write.occurred_unix_nano
    near = [
        c
        for c in calls
        if c.is_write_call
        and c.target == write.target
        and c.start_ns - LINK_WINDOW_NS <= at <= c.end_ns + LINK_WINDOW_NS
    ]
    if not near:
        return None
    return _tool_call_ref(min(near, key=lambda c: abs(at - c.start_ns)), "target_time")


def link_write(write: WriteRecord, spans: Sequence[SpanFact]) -> ToolCallRef | None:
    """The tool call that made a write: by tool call id, else a write span with the same ref, else (inferred)
    a write call on the same target near the write's time."""
    return _proven_link(write, spans) or _inferred_link(write, [s for s in spans if s.entry_type == "tool_call"])


def link_writes(writes: Iterable[WriteRecord], spans: Sequence[SpanFact]) -> list[LinkedWrite]:
    """Links every write; the target/time guess only considers calls that no write names for certain, so a
    write made beside the agent's own (a merge after its pull request) is not credited to a call already
    accounted for."""
    writes = list(writes)
    proven = [_proven_link(write, spans) for write in writes]
    accounted = {link.span_id for link in proven if link is not None}
    open_calls = [s for s in spans if s.entry_type == "tool_call" and s.span_id not in accounted]
    return [
        LinkedWrite(write=write, tool_call=link if link is not None else _inferred_link(write, open_calls))
        for write, link in zip(writes, proven, strict=True)
    ]


def autonomy_level(spans: Iterable[SpanFact]) -> str:
    for span in spans:
        level = span.attributes.get(conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL, "")
        if level:
            return level
    return ""


# --- What the audit believes about each tool call ----------------------------------------------------------


@dataclass(frozen=True)
class CallView:
    """A tool call as the audit sees it: the catalogue's access, target and amount where it has an entry."""

    span: SpanFact
    entry: ToolEntry | None
    access: str
    target: str
    amount: float | None
    arguments: JsonValue

    @property
    def writes(self) -> bool:
        return self.access in WRITING

    @property
    def label(self) -> str:
        return (
            f"{self.span.tool_name!r} ({self.span.tool_call_id})"
            if self.span.tool_call_id
            else repr(self.span.tool_name)
        )


def _parse_arguments(span: SpanFact) -> JsonValue:
    for text in (span.tool_arguments, span.input_value):
        if text:
            try:
                value: JsonValue = json.loads(text)
            except ValueError:
                continue
            return value
    return None


def call_view(span: SpanFact, catalogue: ToolCatalogue) -> CallView:
    entry = catalogue.entry_for(span.tool_name) if span.tool_name else None
    arguments = _parse_arguments(span)
    access = entry.access if entry is not None else span.tool_access
    target = (entry.target_of(arguments) if entry is not None else "") or span.target
    amount = entry.amount_of(arguments) if entry is not None else None
    return CallView(span, entry, access, target, amount, arguments)


@dataclass(frozen=True)
class Decision:
    """A policy decision or approval and the call it applies to."""

    span: SpanFact
    tool_call_id: str
    tool_name: str
    linked_by: str  # tool_call_id, tool_name or inferred

    @property
    def is_approval(self) -> bool:
        return self.span.entry_type == "approval"

    @property
    def decision(self) -> str:
        return self.span.approval_decision if self.is_approval else self.span.policy_decision

    @property
    def arguments_hash(self) -> str:
        if self.is_approval:
            return self.span.arguments_hash
        return self.span.attributes.get(conv.AGENTLEDGER_POLICY_ARGUMENTS_HASH, "")

    def applies_to(self, call: SpanFact) -> bool:
        if self.tool_call_id:
            return self.tool_call_id == call.tool_call_id
        return bool(self.tool_name) and self.tool_name == call.tool_name


def _decisions(spans: Sequence[SpanFact]) -> list[Decision]:
    """Every approval and policy decision of the run, each with the call it applies to. An approval names its
    call id (else its tool); a policy decision names its call (agentledger.policy.tool_call.id) or tool, else
    it is inferred to apply to the next approval or tool call after it."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    found: list[Decision] = []
    for index, span in enumerate(ordered):
        if span.entry_type == "approval":
            call_id = span.attributes.get(conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID, "")
            found.append(Decision(span, call_id, span.tool_name, "tool_call_id" if call_id else "tool_name"))
        elif span.entry_type == "policy_decision":
            call_id = span.attributes.get(conv.AGENTLEDGER_POLICY_TOOL_CALL_ID, "")
            tool_name = span.attributes.get(conv.AGENTLEDGER_POLICY_TOOL_NAME, "")
            if call_id or tool_name:
                found.append(Decision(span, call_id, tool_name, "tool_call_id" if call_id else "tool_name"))
                continue
            following = next((s for s in ordered[index + 1 :] if s.entry_type in ("approval", "tool_call")), None)
            if following is None:
                found.append(Decision(span, "", "", "inferred"))
            elif following.entry_type == "approval":
                governed = following.attributes.get(conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID, "")
                found.append(Decision(span, governed, following.tool_name, "inferred"))
            else:
                found.append(Decision(span, following.tool_call_id, following.tool_name, "inferred"))
    return found


def _chain_decision(item: Decision) -> ChainDecision:
    if item.is_approval:
        by = item.span.approver
    else:
        rule = item.span.attributes.get(conv.AGENTLEDGER_POLICY_RULE_ID, "")
        by = f"{item.span.policy_id}/{rule}" if rule else item.span.policy_id
    return ChainDecision(
        type="approval" if item.is_approval else "policy_decision",
        span_id=item.span.span_id,
        decision=item.decision,
        by=by,
        arguments_hash=item.arguments_hash,
        start_time=rfc3339_nanos(item.span.start_ns),
        linked_by=item.linked_by,
    )


def approval_chains(spans: Sequence[SpanFact], decisions: Sequence[Decision]) -> list[ApprovalChain]:
    chains: list[ApprovalChain] = []
    calls = [s for s in spans if s.entry_type == "tool_call"]
    for call in calls:
        mine = [
            d
            for d in decisions
            if d.applies_to(call) and (d.linked_by != "tool_name" or d.span.start_ns <= call.start_ns)
        ]
        if mine:
            chains.append(
                ApprovalChain(tool_call_id=call.tool_call_id, tool_name=call.tool_name, span_id=call.span_id,
                              executed=True, decisions=[_chain_decision(d) for d in mine])
            )  # fmt: skip
    executed = {call.tool_call_id for call in calls if call.tool_call_id}
    orphans: dict[str, list[Decision]] = {}
    for item in decisions:
        if item.tool_call_id and item.tool_call_id not in executed:
            orphans.setdefault(item.tool_call_id, []).append(item)
    for call_id, items in orphans.items():
        chains.append(
            ApprovalChain(tool_call_id=call_id, tool_name=items[0].tool_name, span_id="", executed=False,
                          decisions=[_chain_decision(d) for d in items])
        )  # fmt: skip
    return chains


# --- The rules ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditContext:
    """What the audit needs besides the run: the tenant's catalogue, the rules' config and the agent's baseline."""

    config: AuditConfig = field(default_factory=AuditConfig)
    catalogue: ToolCatalogue = field(default_factory=ToolCatalogue)
    # Total tokens of the agent's recent earlier runs (newest first), for cost_anomaly.
    baseline_tokens: Sequence[int] = ()
    # The config's rules, when the caller audits many runs with one config (else derived per run).
    rules: Sequence[Rule] | None = None


def active_rules(config: AuditConfig) -> list[Rule]:
    rules: list[Rule] = []
    for rule in BUILTIN_RULES:
        setting = config.rules.get(rule.id)
        if setting is not None and not setting.enabled:
            continue
        severity = setting.severity if setting is not None and setting.severity else rule.severity
        rules.append(Rule(rule.id, severity, rule.description, rule.version))
    rules.extend(Rule(user.id, user.severity, user.description, user.version, "user") for user in config.user_rules)
    return rules


class _Findings:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = {rule.id: rule for rule in rules}
        self.items: list[Finding] = []

    def add(
        self,
        rule_id: str,
        message: str,
        evidence: Sequence[str],
        *,
        tool_call_id: str = "",
        write_ref: str = "",
        inferred: bool = False,
    ) -> None:
        rule = self.rules.get(rule_id)
        if rule is None:  # disabled in config
            return
        unique = list(dict.fromkeys(span_id for span_id in evidence if span_id))
        self.items.append(
            Finding(rule=rule.id, rule_version=rule.version, check=rule.id, severity=rule.severity, message=message,
                    evidence=unique, inferred=inferred, span_id=unique[0] if unique else "",
                    tool_call_id=tool_call_id, write_ref=write_ref)
        )  # fmt: skip


def _human_approved(decision: Decision) -> bool:
    return decision.is_approval and decision.decision == "approved"


def _approvals_before(call: SpanFact, decisions: Sequence[Decision]) -> list[Decision]:
    return [d for d in decisions if d.is_approval and d.applies_to(call) and d.span.start_ns <= call.start_ns]


def _in_force(call: SpanFact, decisions: Sequence[Decision]) -> Decision | None:
    """The latest approval decided before the call: the one in force when it ran."""
    approvals = _approvals_before(call, decisions)
    return max(approvals, key=lambda d: d.span.start_ns) if approvals else None


def _human_cleared(view: CallView, decisions: Sequence[Decision]) -> bool:
    latest = _in_force(view.span, decisions)
    if latest is None or not _human_approved(latest):
        return False
    # An approval of other arguments clears nothing (approval_mismatch says so).
    return not (
        latest.arguments_hash and view.span.arguments_hash and latest.arguments_hash != view.span.arguments_hash
    )


def _high_risk(view: CallView, decisions: Sequence[Decision]) -> bool:
    """A policy that applies to this call asked for review or escalation (or blocked it), or the tool is
    destructive or rated high risk by the catalogue."""
    if view.access == "destructive" or (view.entry is not None and view.entry.risk == "high"):
        return True
    return any(
        not d.is_approval and d.applies_to(view.span) and d.decision in ("review", "escalate", "block")
        for d in decisions
    )


def _missing_approval(view: CallView, decisions: Sequence[Decision], level: str) -> tuple[str, bool] | None:
    """The sentence of a missing approval and whether it rests on an inferred link, or None."""
    inferred = any(d.linked_by != "tool_call_id" for d in decisions if d.applies_to(view.span))
    approved = _in_force(view.span, decisions)
    human = approved is not None and _human_approved(approved)
    what = f"{view.access} tool call {view.label}"
    if view.entry is not None and view.entry.requires_human_approval:
        if not human:
            return f"{what} has no human approval; the tool catalogue requires one for {view.entry.tool!r}", inferred
        return None
    if level == "autonomous":
        return None
    if level == "suggest_only":
        return f"{what} in a run whose autonomy level is suggest_only", False
    if level == "approve_high_risk":
        if _high_risk(view, decisions) and not human:
            return (
                f"{what} was high risk (a policy asked for review, or the tool is destructive) but has no human"
                " approval (autonomy level approve_high_risk)",
                inferred,
            )
        return None
    if not human:
        named = level or "unset (treated as approve_writes)"
        return f"{what} has no human approval; autonomy level {named} requires one", inferred
    return None


def _run_attribute(spans: Sequence[SpanFact], key: str) -> str:
    return next((s.attributes[key] for s in spans if s.entry_type == "run" and s.attributes.get(key)), "")


def _target_kind(target: str) -> tuple[str, str]:
    kind, _, ident = target.rpartition("/")
    return kind, ident


def _significant_values(arguments: JsonValue) -> list[str]:
    """Argument values that can be traced through text: ids, amounts, e-mail addresses, URLs."""
    found: list[str] = []
    if isinstance(arguments, dict):
        for value in arguments.values():
            found.extend(_significant_values(value))
    elif isinstance(arguments, list):
        for value in arguments:
            found.extend(_significant_values(value))
    elif isinstance(arguments, bool) or arguments is None:
        pass
    elif isinstance(arguments, (int, float)):
        found.append(scalar_text(arguments))
    elif isinstance(arguments, str):
        if len(arguments) <= _MAX_VALUE_CHARS and not any(c.isspace() for c in arguments):
            if any(c.isdigit() for c in arguments) or "@" in arguments or "://" in arguments:
                found.append(arguments)
        else:
            found.extend(_EMAIL.findall(arguments))
            found.extend(_URL.findall(arguments))
    return list(dict.fromkeys(found))


def _occurs(value: str, text: str) -> bool:
    if not text:
        return False
    if re.fullmatch(r"-?\d+", value):
        pattern = rf"(?<![\d.]){re.escape(value)}(?:[.,]0+)?(?!\d)"
    else:
        # An id is a whole token: OPS is not found in OPS-17, nor C-1 in C-123.
        pattern = rf"(?<![A-Za-z0-9_\-]){re.escape(value)}(?![A-Za-z0-9_\-])"
    return re.search(pattern, text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class _Input:
    start_ns: int
    trusted: bool
    text: str
    # A read tool's result taken as internal because it carries no trust label.
    assumed_internal: bool = False


def _inputs(spans: Sequence[SpanFact]) -> list[_Input]:
    """What each span brought into the run, trusted or not, once per run (the rules ask per call)."""
    found: list[_Input] = []
    for span in spans:
        if span.entry_type == "run":
            text = "\n".join(
                span.attributes.get(key, "")
                for key in (conv.AGENTLEDGER_RUN_TASK, conv.AGENTLEDGER_RUN_SUBJECTS, conv.AGENTLEDGER_RUN_REQUESTER)
            )
            found.append(_Input(span.start_ns, True, text))
        elif span.entry_type == "tool_call" and span.tool_access not in WRITING:
            labelled = bool(span.attributes.get(conv.AGENTLEDGER_TOOL_RESULT_TRUST))
            untrusted = span.untrusted_input
            found.append(_Input(span.start_ns, not untrusted, span.content, not untrusted and not labelled))
        elif span.entry_type in ("retrieval", "span"):
            found.append(_Input(span.start_ns, not span.untrusted_input, span.content))
    return found


def _trust_texts(inputs: Sequence[_Input], before_ns: int) -> tuple[str, str, bool]:
    """(trusted text, untrusted text, whether a read tool's result was taken as internal without a trust label)
    of what came into the run up to `before_ns`."""
    earlier = [item for item in inputs if item.start_ns <= before_ns]
    trusted = "\n".join(item.text for item in earlier if item.trusted)
    untrusted = "\n".join(item.text for item in earlier if not item.trusted)
    return trusted, untrusted, any(item.assumed_internal for item in earlier)


def _subjects(spans: Sequence[SpanFact]) -> tuple[list[str], bool]:
    """The run's subjects (and requester) as target references; else ids named in the task text (inferred)."""
    declared = _string_list(_run_attribute(spans, conv.AGENTLEDGER_RUN_SUBJECTS))
    requester = _run_attribute(spans, conv.AGENTLEDGER_RUN_REQUESTER)
    if requester:
        declared.append(requester)
    if declared:
        return list(dict.fromkeys(declared)), False
    return _ID_IN_TEXT.findall(_run_attribute(spans, conv.AGENTLEDGER_RUN_TASK)), True


def _rule_untrusted(views: Sequence[CallView], spans: Sequence[SpanFact], inputs: Sequence[_Input],
                    decisions: Sequence[Decision], found: _Findings) -> None:  # fmt: skip
    subjects, _ = _subjects(spans)
    untrusted_spans = [s for s in spans if s.untrusted_input]
    for view in views:
        call = view.span
        earlier = [s for s in untrusted_spans if s.start_ns <= call.start_ns and s.span_id != call.span_id]
        declared = sorted(set(call.influenced_by) & UNTRUSTED)
        if not earlier and not declared:
            continue
        if _human_cleared(view, decisions):
            continue
        trusted, _, _ = _trust_texts(inputs, call.start_ns)
        _, ident = _target_kind(view.target)
        if view.target and (view.target in subjects or (ident and _occurs(ident, trusted))):
            continue  # the target is what the run is about: the untrusted input did not choose it
        sources = ", ".join(sorted({f"{s.provenance or 'external'}: {s.name}" for s in earlier})) or ", ".join(declared)
        target = f"wrote to {view.target}" if view.target else "ran (no target known)"
        allowed = any(not d.is_approval and d.decision == "allow" and d.applies_to(call) for d in decisions)
        note = "; a policy allow is not a clearance" if allowed else ""
        found.add(
            "untrusted_influence",
            f"{view.access} tool call {view.label} {target} after untrusted input ({sources}), and that target is"
            f" neither the run's subject nor in trusted input; no human approved it{note}",
            [call.span_id, *(s.span_id for s in earlier)],
            tool_call_id=call.tool_call_id,
        )


def _rule_content_flow(views: Sequence[CallView], spans: Sequence[SpanFact], inputs: Sequence[_Input],
                       decisions: Sequence[Decision], found: _Findings) -> None:  # fmt: skip
    for view in views:
        if _human_cleared(view, decisions):
            continue  # a person approved exactly these arguments, values and all
        trusted, untrusted, assumed = _trust_texts(inputs, view.span.start_ns)
        if not untrusted:
            continue
        carried = [v for v in _significant_values(view.arguments) if _occurs(v, untrusted) and not _occurs(v, trusted)]
        if not carried:
            continue
        sources = [s.span_id for s in spans if s.untrusted_input and s.start_ns <= view.span.start_ns
                   and any(_occurs(v, s.content) for v in carried)]  # fmt: skip
        note = " (read tool results without a trust label were taken as internal)" if assumed else ""
        found.add(
            "content_flow",
            f"{view.access} tool call {view.label} used {', '.join(repr(v) for v in carried)}, found in untrusted"
            f" input but not in the task or trusted input{note}",
            [view.span.span_id, *sources],
            tool_call_id=view.span.tool_call_id,
            inferred=assumed,
        )


def _rule_target_mismatch(views: Sequence[CallView], spans: Sequence[SpanFact], found: _Findings) -> None:
    subjects, inferred = _subjects(spans)
    if not subjects:
        return
    run_span = next((s.span_id for s in spans if s.entry_type == "run"), "")
    for view in views:
        if not view.target:
            continue
        kind, ident = _target_kind(view.target)
        if inferred:
            # Only ids in the task text: a target id of the same shape (C-…) that is not among them.
            prefix = ident.split("-", 1)[0] + "-" if "-" in ident else ""
            same_shape = [s for s in subjects if prefix and s.startswith(prefix)]
            if same_shape and ident not in subjects:
                found.add(
                    "target_mismatch",
                    f"{view.access} tool call {view.label} acted on {view.target}, while the task names"
                    f" {', '.join(same_shape)} (inferred from the task text; the run declares no subjects)",
                    [view.span.span_id, run_span], tool_call_id=view.span.tool_call_id, inferred=True,
                )  # fmt: skip
            continue
        same_kind = [s for s in subjects if _target_kind(s)[0] == kind]
        if same_kind and view.target not in same_kind:
            found.add(
                "target_mismatch",
                f"{view.access} tool call {view.label} acted on {view.target}, but the run is about"
                f" {', '.join(same_kind)}",
                [view.span.span_id, run_span], tool_call_id=view.span.tool_call_id,
            )  # fmt: skip


def _rule_policy_violated(views: Sequence[CallView], spans: Sequence[SpanFact], decisions: Sequence[Decision],
                          linked: Sequence[LinkedWrite], found: _Findings) -> None:  # fmt: skip
    for item in decisions:
        if item.is_approval or item.decision not in ("block", "deny"):
            continue
        policy = item.span
        for view in views:
            call = view.span
            if call.start_ns >= policy.start_ns and item.applies_to(call) and call.status != "ERROR":
                found.add(
                    "policy_violated",
                    f"policy {policy.policy_id} decided {item.decision} for {view.label}, and the call ran anyway",
                    [call.span_id, policy.span_id], tool_call_id=call.tool_call_id,
                    inferred=item.linked_by == "inferred",
                )  # fmt: skip
        blocked_tool = item.tool_name.lower()
        if not blocked_tool:
            continue
        for write in linked:
            record = write.write
            proven = write.tool_call is not None and not write.tool_call.inferred
            if proven or record.occurred_unix_nano < policy.start_ns or record.action.lower() not in blocked_tool:
                continue
            write_span = next(
                (s.span_id for s in spans if s.entry_type == "downstream_write" and s.write_ref == record.ref), ""
            )
            found.add(
                "policy_violated",
                f"policy {policy.policy_id} decided {item.decision} for {item.tool_name!r}, and {record.system}"
                f" recorded a {record.action} ({record.ref}) afterwards (matched by the action's name, inferred)",
                [policy.span_id, write_span], write_ref=record.ref, inferred=True,
            )  # fmt: skip


def _rule_approvals(views: Sequence[CallView], decisions: Sequence[Decision], found: _Findings) -> None:
    for view in views:
        call = view.span
        latest = _in_force(call, decisions)
        if latest is not None and latest.decision in ("rejected", "timed_out") and call.status != "ERROR":
            found.add(
                "approval_mismatch",
                f"tool call {view.label} ran after its approval was {latest.decision}"
                f" by {latest.span.approver or 'nobody'}",
                [call.span_id, latest.span.span_id], tool_call_id=call.tool_call_id,
            )  # fmt: skip
        elif (
            latest is not None
            and latest.arguments_hash
            and call.arguments_hash
            and latest.arguments_hash != call.arguments_hash
        ):
            found.add(
                "approval_mismatch",
                f"tool call {view.label} ran with other arguments than"
                f" {latest.span.approver or 'the approver'} approved"
                f" (arguments hash {call.arguments_hash[:19]}… executed, {latest.arguments_hash[:19]}… approved)",
                [call.span_id, latest.span.span_id], tool_call_id=call.tool_call_id,
            )  # fmt: skip
        late = [
            d
            for d in decisions
            if d.is_approval and d.tool_call_id and d.applies_to(call) and d.span.start_ns > call.start_ns
        ]
        for item in late:
            found.add(
                "approval_mismatch",
                f"the approval of tool call {view.label} ({item.decision} by {item.span.approver or 'unknown'}) was"
                " given after the call had started",
                [call.span_id, item.span.span_id], tool_call_id=call.tool_call_id,
            )  # fmt: skip
    for item in decisions:
        if item.is_approval and item.decision == "rejected":
            given = item.span.attributes.get(conv.AGENTLEDGER_APPROVAL_REASON, "")
            reason = f": {given}" if given else ""
            found.add(
                "approval_rejected",
                f"{item.span.approver or 'an approver'} rejected {item.tool_name!r}"
                f"{f' ({item.tool_call_id})' if item.tool_call_id else ''}{reason}",
                [item.span.span_id], tool_call_id=item.tool_call_id,
            )  # fmt: skip


def _rule_writes(views: Sequence[CallView], spans: Sequence[SpanFact], linked: Sequence[LinkedWrite],
                 found: _Findings) -> None:  # fmt: skip
    for item in linked:
        write = item.write
        write_span = next(
            (s.span_id for s in spans if s.entry_type == "downstream_write" and s.write_ref == write.ref), ""
        )
        if item.tool_call is None:
            found.add(
                "unaccounted_write",
                f"{write.system} {write.action} {write.ref} has no matching tool call in the run",
                [write_span], tool_call_id=write.tool_call_id, write_ref=write.ref,
            )  # fmt: skip
    confirmed = {i.tool_call.span_id for i in linked if i.tool_call is not None}
    for view in views:
        if view.span.span_id not in confirmed and view.span.status != "ERROR":
            found.add(
                "unconfirmed_write_call",
                f"{view.access} tool call {view.label} has no downstream write confirming it",
                [view.span.span_id], tool_call_id=view.span.tool_call_id,
            )  # fmt: skip


def _rule_access(all_calls: Sequence[CallView], found: _Findings) -> None:
    for view in all_calls:
        declared = view.span.tool_access
        if view.entry is not None and declared and declared != view.entry.access:
            found.add(
                "access_mismatch",
                f"the agent declared {view.label} as {declared}, the tool catalogue says {view.entry.access}"
                f" (entry {view.entry.tool!r})",
                [view.span.span_id], tool_call_id=view.span.tool_call_id,
            )  # fmt: skip


def _rule_loop(all_calls: Sequence[CallView], threshold: int, found: _Findings) -> None:
    groups: dict[tuple[str, str], list[CallView]] = {}
    for view in all_calls:
        key = view.span.arguments_hash or view.span.tool_arguments
        if key:
            groups.setdefault((view.span.tool_name, key), []).append(view)
    for (tool_name, _), views in groups.items():
        if len(views) < threshold:
            continue
        attempts = [v.span.attributes.get(conv.AGENTLEDGER_TOOL_ATTEMPT, "") for v in views]
        counted = (f" (attempts {attempts[0]} to {attempts[-1]})" if all(attempts)
                   else " (no attempt counter sent: counted by tool and arguments hash)")  # fmt: skip
        failed = sum(1 for v in views if v.span.status == "ERROR")
        found.add(
            "loop",
            f"{views[0].access or 'tool'} tool {tool_name!r} was called {len(views)} times with the same arguments"
            f"{counted}, {failed} of them failed",
            [v.span.span_id for v in views], tool_call_id=views[0].span.tool_call_id,
        )  # fmt: skip


def _rule_cost(spans: Sequence[SpanFact], context: AuditContext, found: _Findings) -> None:
    prompts = [s for s in spans if s.input_tokens or s.output_tokens]
    tokens = sum(s.input_tokens + s.output_tokens for s in prompts)
    evidence = [s.span_id for s in sorted(prompts, key=lambda s: -(s.input_tokens + s.output_tokens))][:20]
    agent = next((s.agent_id for s in spans if s.entry_type == "run" and s.agent_id), "")
    cost = context.config.cost
    baseline = list(context.baseline_tokens)[: cost.baseline_runs]
    if tokens and len(baseline) >= cost.min_baseline_runs:
        median = statistics.median(baseline)
        mad = statistics.median(abs(value - median) for value in baseline)
        limit = max(median + cost.mad_factor * 1.4826 * mad, median * cost.min_ratio)
        if tokens > limit:
            ratio = f", {tokens / median:.0f}x the median" if median else ""
            found.add(
                "cost_anomaly",
                f"the run used {tokens:,} tokens against a median of {median:,.0f} (MAD {mad:,.0f}) over agent"
                f" {agent}'s last {len(baseline)} runs{ratio}",
                evidence,
            )
    budget = cost.budget_for(agent)
    if budget is not None and budget.max_tokens is not None and tokens > budget.max_tokens:
        found.add("cost_anomaly",
                  f"the run used {tokens:,} tokens; agent {agent}'s budget is {budget.max_tokens:,} per run",
                  evidence)  # fmt: skip
    calls = [s for s in spans if s.entry_type == "tool_call"]
    if budget is not None and budget.max_tool_calls is not None and len(calls) > budget.max_tool_calls:
        found.add("cost_anomaly",
                  f"the run made {len(calls)} tool calls; agent {agent}'s budget is {budget.max_tool_calls} per run",
                  [s.span_id for s in calls][:20])  # fmt: skip


def _user_rule_matches(rule: UserRule, span: SpanFact, view: CallView | None) -> bool:
    when = rule.when
    if when.entry_type is not None and span.entry_type != when.entry_type:
        return False
    if when.tool is not None and not (
        span.tool_name and ToolEntry(tool=when.tool, access="read").matches(span.tool_name)
    ):
        return False
    if when.access is not None and (view.access if view is not None else span.tool_access) != when.access:
        return False
    return all(span.attributes.get(key) == value for key, value in when.attributes.items())


def _rule_user(rules: Sequence[UserRule], spans: Sequence[SpanFact], views: Mapping[str, CallView],
               found: _Findings) -> None:  # fmt: skip
    for rule in rules:
        for span in spans:
            view = views.get(span.span_id)
            if _user_rule_matches(rule, span, view):
                target = view.target if view is not None else span.target
                message = rule.message.replace("{tool_name}", span.tool_name).replace("{name}", span.name)
                found.add(rule.id, message.replace("{target}", target), [span.span_id], tool_call_id=span.tool_call_id)


def audit_run(
    run_id: str, spans: Sequence[SpanFact], linked: Sequence[LinkedWrite], context: AuditContext | None = None
) -> Audit:
    context = context or AuditContext()
    rules = context.rules if context.rules is not None else active_rules(context.config)
    found = _Findings(rules)
    all_calls = [call_view(s, context.catalogue) for s in spans if s.entry_type == "tool_call"]
    views = [v for v in all_calls if v.writes]
    decisions = _decisions(spans)
    level = autonomy_level(spans)
    _rule_writes(views, spans, linked, found)
    for view in views:
        missing = _missing_approval(view, decisions, level)
        if missing is not None:
            found.add("missing_approval", missing[0], [view.span.span_id], tool_call_id=view.span.tool_call_id,
                      inferred=missing[1])  # fmt: skip
    inputs = _inputs(spans)
    _rule_untrusted(views, spans, inputs, decisions, found)
    _rule_content_flow(views, spans, inputs, decisions, found)
    _rule_target_mismatch(views, spans, found)
    _rule_policy_violated(views, spans, decisions, linked, found)
    _rule_approvals(views, decisions, found)
    _rule_access(all_calls, found)
    _rule_loop(all_calls, context.config.loop_threshold, found)
    _rule_cost(spans, context, found)
    _rule_user(context.config.user_rules, spans, {v.span.span_id: v for v in all_calls}, found)
    return Audit(
        run_id=run_id,
        autonomy_level=level,
        checks=[rule.id for rule in rules],
        rules=[
            RuleInfo(id=r.id, severity=r.severity, description=r.description, version=r.version, origin=r.origin)
            for r in rules
        ],
        findings=found.items,
        approval_chains=approval_chains(spans, decisions),
    )
