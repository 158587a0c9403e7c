"""Response bodies of the query API (pydantic), which also make the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from agentledger.query_api.times import parse_rfc3339_ns
from agentledger.schema.run_ids import MAX_RUN_ID_BYTES, checked_run_id

# A run id in a request body: the same rule as the collector's and the paths' (schema/run_ids.py).
RunIdText = Annotated[str, AfterValidator(checked_run_id)]


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, in a sentence.")


class SpanEvent(BaseModel):
    name: str
    time_unix_nano: int
    attributes: dict[str, str]


class Annotation(BaseModel):
    name: str = Field(description="What was judged, e.g. correctness.")
    label: str
    score: float | None
    explanation: str
    annotator_kind: str = Field(description="HUMAN, LLM or CODE.")
    annotator: str = Field(description="Who: the Phoenix user, or where the annotation came from.")
    source: str = Field(description="Where it was made: phoenix.")
    created_at: str
    updated_at: str


class TimelineEntry(BaseModel):
    type: str = Field(description="Timeline type from agentledger.span.type: run, prompt, retrieval, tool_call, ...")
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_time: str = Field(description="RFC 3339 UTC with nanoseconds.")
    start_unix_nano: int
    end_unix_nano: int
    duration_ms: float
    status: str = Field(description="UNSET, OK or ERROR.")
    status_message: str
    service_name: str
    agent_id: str = Field(description="The agent id the span claims (gen_ai.agent.id).")
    verified_agent_id: str = Field(description="The agent identity the collector authenticated; empty without auth.")
    identity_mismatch: bool = Field(description="The span claims another agent than the one authenticated.")
    truncated: list[str] = Field(description="What the collector's limits cut on this span, if anything.")
    details: dict[str, str | int] = Field(description="The type's own fields (tool, target, approver, ...).")
    attributes: dict[str, str]
    events: list[SpanEvent]
    linked_span_id: str = Field(
        default="", description="For a `write` entry: the tool-call span that made it; empty if unaccounted."
    )
    findings: list[str] = Field(default=[], description="Audit checks this entry failed.")
    annotations: list[Annotation] = Field(
        default_factory=list, description="Reviewers' annotations of the span (synced from Phoenix), oldest first."
    )
    phoenix_url: str = Field("", description="The span in Phoenix's UI; empty when no Phoenix is configured.")
    cost_usd: float | None = Field(
        default=None, description="A model call: its tokens at the configured prices (US dollars); else none."
    )


class RunSummary(BaseModel):
    run_id: str
    agent_id: str
    agent_name: str
    outcome: str
    trace_ids: list[str]
    first_start: str
    last_end: str
    span_count: int
    error_count: int


class RunTotals(BaseModel):
    """What the run used: tokens of every model call, and what they and the tools cost."""

    model_calls: int
    input_tokens: int
    output_tokens: int
    model_cost_usd: float = Field(description="Tokens at the configured prices (api.metrics.pricing).")
    tool_cost_usd: float = Field(description="The sum of agentledger.tool.cost over the run's spans.")
    cost_usd: float = Field(description="model_cost_usd + tool_cost_usd.")
    unpriced_models: list[str] = Field(description="Models the price table lacks: counted as costing nothing.")


class Timeline(BaseModel):
    run: RunSummary
    entries: list[TimelineEntry] = Field(description="Spans and downstream writes (type `write`) in time order.")
    writes: list[LinkedWrite] = Field(description="The run's downstream writes and the tool call each came from.")
    audit: Audit
    integrity: Verification | None = Field(
        default=None, description="With `verify=true`: the run checked against its audit hash chain."
    )
    totals: RunTotals | None = Field(default=None, description="Tokens and cost of the run.")


class Health(BaseModel):
    status: str
    clickhouse: str


class SpanFinding(BaseModel):
    trace_id: str
    span_id: str
    name: str = Field(description="The stored span's name (empty when the span was removed).")
    problem: Literal["altered", "removed", "inserted", "pruned", "deleted", "conflict"] = Field(
        description="altered: stored content differs from what was chained; removed: chained but no longer"
        " stored; inserted: stored but never chained (written around the collector). Not tampering: pruned"
        " (gone after its retention ended), deleted (gone after a deletion request recorded as a tombstone),"
        " conflict (the span id was re-sent, or chained by two collectors, with other content; the stored,"
        " chained copy is kept and `note` says what was received)."
    )
    link_seq: int | None = Field(description="The chain link that recorded the span (none when inserted).")
    at: str = Field("", description="pruned: when retention ended; deleted: when the tombstone was written.")
    note: str = Field("", description="deleted: the reason and requester recorded in the tombstone.")


ChainProblem = Literal[
    "altered_link",
    "bad_signature",
    "missing_link",
    "replayed_link",
    "reordered",
    "broken_pointer",
    "truncated",
    "log_gap",
    "root_mismatch",
    "bad_checkpoint",
    "erased",
    "unknown_format",
]


class ChainBreak(BaseModel):
    seq: int = Field(description="The run's link (its seq in its collector's log); 0 when no link is named.")
    problem: str = Field(description="What is wrong, in a sentence.")
    finding: ChainProblem = Field(
        "altered_link",
        description="altered_link: a link's hash does not match its contents (kind, note, entries or position"
        " changed); bad_signature; missing_link: a gap in the run's seq; replayed_link: a stored copy of a link"
        " inserted again; reordered: links out of order; broken_pointer: prev_link is not the previous link;"
        " truncated: the log is shorter than a checkpoint; log_gap: log indices missing; root_mismatch: the"
        " log's Merkle root differs from a checkpoint's; bad_checkpoint: a checkpoint's signature fails;"
        " erased: the run index lists the run but its record is gone; unknown_format.",
    )
    collector_id: str = Field("", description="The collector log the link or the problem is in.")
    log_index: int | None = Field(None, description="The link's position in its collector's log.")


class LogStatus(BaseModel):
    collector_id: str
    size: int = Field(description="Links stored in this collector's log for the tenant.")
    checkpoint_size: int = Field(description="Links the latest checkpoint covers (0: none yet).")
    checkpoint_root: str
    checkpoint_time: str
    consistent: bool = Field(description="Every checkpoint's root recomputes from the stored log.")
    links_after_checkpoint: int = Field(description="Links appended since the latest checkpoint.")
    problems: list[ChainBreak]


class LogVerification(BaseModel):
    tenant: str
    status: Literal["consistent", "inconsistent"]
    logs: list[LogStatus]


class CheckpointOut(BaseModel):
    format: str
    tenant: str
    collector_id: str
    size: int
    root: str
    time_ns: int
    signature: str


class Verification(BaseModel):
    run_id: str
    status: Literal["intact", "pruned", "tampered", "unchained"] = Field(
        description="intact: every link and span recomputes; pruned: intact except spans removed by retention"
        " or by a recorded deletion; tampered: see findings and chain_breaks; unchained: spans exist but no"
        " chain (ingested with audit_chain off)."
    )
    links: int
    spans_checked: int
    head: str = Field(description="The last link's hash: what a signature or an external witness commits to.")
    head_signature: str = Field(description="Base64 Ed25519 signature of the head link (empty when unsigned).")
    signatures_checked: bool = Field(description="Every link's signature was checked with the configured key.")
    first_bad_link: int | None = Field(description="The earliest link from which the record cannot be trusted.")
    chain_breaks: list[ChainBreak]
    findings: list[SpanFinding]
    logs: list[LogStatus] = Field(
        default_factory=list, description="The collector logs holding the run's links, checked against checkpoints."
    )
    links_after_checkpoint: int = Field(0, description="The run's links appended after its log's latest checkpoint.")


HoldScope = Literal["run", "agent"]


class HoldRequest(BaseModel):
    scope: HoldScope = Field(description="run: one run; agent: every run of an agent, including future ones.")
    target: RunIdText = Field(description=f"The run id or the agent id (at most {MAX_RUN_ID_BYTES} bytes of UTF-8).")
    reason: str = Field(min_length=1, max_length=2000, description="Why, e.g. the matter or ticket number.")


class Hold(BaseModel):
    hold_id: str
    scope: HoldScope
    target: str
    reason: str
    placed_by: str
    placed_at: str
    released: bool


class Deletion(BaseModel):
    run_id: str
    deleted_spans: int
    tombstone_seq: int = Field(description="The tombstone link's seq for this run in the query API's own audit log.")
    note: str


class WriteIn(BaseModel):
    """One downstream write as the system written to reports it."""

    model_config = ConfigDict(extra="forbid")

    run_id: RunIdText = Field(
        description=f"The agent.run.id the written object carries (at most {MAX_RUN_ID_BYTES} bytes of UTF-8)."
    )
    system: str = Field(min_length=1, max_length=64, description="System written to: github, jira, stripe, ...")
    ref: str = Field(min_length=1, max_length=2048, description="Stable reference: PR URL, ticket key, record id.")
    action: str = Field(min_length=1, max_length=64, description="create, update, delete, comment, merge, transfer")
    target: str = Field(max_length=2048, description="The resource acted on (customer, repository, project).")
    occurred_at: str = Field(
        max_length=64, description="RFC 3339 time of the write with an offset, e.g. 2026-11-25T04:00:00.123Z."
    )
    tool_call_id: str | None = Field(default=None, max_length=256, description="gen_ai.tool.call.id, if known.")
    title: str | None = Field(default=None, max_length=4096)
    url: str | None = Field(default=None, max_length=2048)
    actor: str | None = Field(default=None, max_length=256)

    @field_validator("occurred_at")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        parse_rfc3339_ns(value)
        return value


class WritesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    writes: list[WriteIn] = Field(max_length=10_000, description="At most 10,000 writes per request.")


class Accepted(BaseModel):
    accepted: int = Field(description="Writes stored.")


class HookAccepted(BaseModel):
    accepted: int = Field(description="Writes stored from this delivery.")
    ignored: int = Field(description="Objects in the delivery that carried no run id, so were not stored.")
    detail: str = Field(description="What was done, in a sentence.")


class WriteRecord(BaseModel):
    run_id: str
    system: str
    ref: str
    action: str
    target: str
    occurred_at: str = Field(description="RFC 3339 UTC with nanoseconds.")
    occurred_unix_nano: int
    tool_call_id: str
    source: str = Field(
        description="How it arrived: api (imports too), github, jira; span when only the agent's write span names it."
    )
    title: str
    url: str
    actor: str


class ToolCallRef(BaseModel):
    """The tool-call span a write is attributed to."""

    trace_id: str
    span_id: str
    name: str
    tool_name: str
    tool_call_id: str
    start_time: str
    link: str = Field(description="How it was matched: tool_call_id, write_span (by write ref) or target_time.")
    inferred: bool = Field(False, description="Matched only by target and time: a guess, not proof.")


class LinkedWrite(BaseModel):
    write: WriteRecord
    tool_call: ToolCallRef | None = Field(description="None when no tool call accounts for the write.")


class Finding(BaseModel):
    """One audit finding: which rule, how bad, the spans that prove it and a sentence a responder can read."""

    rule: str = Field(description="The rule's id (see `Audit.rules`), e.g. untrusted_influence.")
    rule_version: int = Field(description="Version of the rule's logic that made the finding.")
    check: str = Field(description="Same as `rule` (the name of earlier versions of this API).")
    severity: str = Field(description="info, low, medium, high or critical.")
    message: str = Field(description="One sentence saying what happened, naming tools, ids and what was inferred.")
    evidence: list[str] = Field(
        default_factory=list, description="Span ids that prove the finding (each a timeline entry), first the main one."
    )
    inferred: bool = Field(
        False,
        description="Part of the finding rests on inference (a time/target link, a convention the run did not send).",
    )
    span_id: str = Field(description="The main span concerned (usually the tool call), or empty.")
    tool_call_id: str
    write_ref: str = Field(description="The downstream write concerned, or empty.")


class RuleInfo(BaseModel):
    id: str
    severity: str
    description: str
    version: int
    origin: str = Field(description="builtin, or user (api.audit.user_rules).")


class ChainDecision(BaseModel):
    """A policy decision or approval that applies to one tool call."""

    type: Literal["policy_decision", "approval"]
    span_id: str
    decision: str
    by: str = Field(description="The approver, or the policy id (and rule id).")
    arguments_hash: str = Field(description="The arguments hash the decision saw, if it recorded one.")
    start_time: str
    linked_by: str = Field(
        description="tool_call_id (the decision names the call), tool_name, or inferred (the next call)."
    )


class ApprovalChain(BaseModel):
    """The decisions that apply to one tool call, in time order; a call that never ran (rejected) has one too."""

    tool_call_id: str
    tool_name: str
    span_id: str = Field(description="The tool-call span; empty when the call never ran.")
    executed: bool
    decisions: list[ChainDecision]


class Audit(BaseModel):
    run_id: str
    autonomy_level: str = Field(description="From agentledger.run.autonomy_level; empty when the run sent none.")
    checks: list[str] = Field(description="The ids of the rules that ran.")
    rules: list[RuleInfo] = Field(default_factory=list, description="The rules that ran, with severity and version.")
    findings: list[Finding]
    approval_chains: list[ApprovalChain] = Field(default_factory=list)


class WriteLookup(BaseModel):
    ref: str
    matches: list[LinkedWrite] = Field(description="Every run that wrote this reference, newest first.")


class RunListItem(BaseModel):
    run_id: str
    agent_id: str
    agent_name: str
    outcome: str
    autonomy_level: str
    tools: list[str]
    first_start: str
    last_end: str
    span_count: int
    error_count: int
    write_tool_calls: int
    findings: int | None = Field(
        description="Audit findings; computed with with_findings=true or a has_violations, rule or severity filter."
    )
    finding_rules: list[str] | None = Field(
        default=None, description="The rules with findings (sorted); computed with `findings`."
    )
    max_severity: str | None = Field(
        default=None, description="The worst finding's severity; computed with `findings`."
    )
    top_severity: str | None = Field(
        default=None, description="The same as max_severity (the name the runs page reads)."
    )
    workflow: str = Field(default="", description="gen_ai.workflow.name of the run's run span.")
    writes: int = Field(default=0, description="Downstream writes reported for the run.")
    input_tokens: int = Field(default=0)
    output_tokens: int = Field(default=0)
    cost_usd: float = Field(default=0.0, description="Model tokens at the configured prices plus tool costs.")
    duration_ms: float = Field(default=0.0, description="From the run's first span start to its last span end.")


class RunPage(BaseModel):
    runs: list[RunListItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TargetTouch(BaseModel):
    run_id: str
    kind: str = Field(
        description="span (a tool call or write span acted on it) or write (a downstream write names it)."
    )
    name: str
    tool_call_id: str
    write_ref: str
    span_id: str
    time: str


class TargetRuns(BaseModel):
    target: str
    touches: list[TargetTouch] = Field(description="Newest first, at most `limit`.")


class AnnotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    span_id: str = Field(min_length=1, max_length=64, description="Span of the run being annotated.")
    name: str = Field(min_length=1, max_length=128, description="e.g. root_cause, correct, injection.")
    label: str = Field(default="", max_length=256)
    score: float | None = Field(default=None, allow_inf_nan=False)
    explanation: str = Field(default="", max_length=8192)


class AnnotationOut(BaseModel):
    annotation_id: str
    span_id: str
    trace_id: str
    name: str
    label: str
    score: float | None
    explanation: str
    annotator: str
    created_at: str


Timeline.model_rebuild()
