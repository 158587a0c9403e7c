"""Response bodies of the query API (pydantic), which also make the OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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
    annotations: list[Annotation] = Field(
        default_factory=list, description="Reviewers' annotations of the span (synced from Phoenix), oldest first."
    )
    phoenix_url: str = Field("", description="The span in Phoenix's UI; empty when no Phoenix is configured.")


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


class Timeline(BaseModel):
    run: RunSummary
    entries: list[TimelineEntry]


class Health(BaseModel):
    status: str
    clickhouse: str


class SpanFinding(BaseModel):
    trace_id: str
    span_id: str
    name: str = Field(description="The stored span's name (empty when the span was removed).")
    problem: Literal["altered", "removed", "inserted", "pruned", "deleted"] = Field(
        description="altered: stored content differs from what was chained; removed: chained but no longer"
        " stored; inserted: stored but never chained (written around the collector). Not tampering: pruned"
        " (gone after its retention ended), deleted (gone after a deletion request recorded as a tombstone)."
    )
    link_seq: int | None = Field(description="The chain link that recorded the span (none when inserted).")
    at: str = Field("", description="pruned: when retention ended; deleted: when the tombstone was written.")
    note: str = Field("", description="deleted: the reason and requester recorded in the tombstone.")


class ChainBreak(BaseModel):
    seq: int
    problem: str


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


HoldScope = Literal["run", "agent"]


class HoldRequest(BaseModel):
    scope: HoldScope = Field(description="run: one run; agent: every run of an agent, including future ones.")
    target: str = Field(min_length=1, max_length=256, description="The run id or the agent id.")
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
    tombstone_seq: int = Field(description="The audit chain link recording the deletion.")
    note: str
