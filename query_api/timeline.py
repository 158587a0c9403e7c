"""Builds a run's incident timeline: the run index row, then the run's spans in time order, typed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from agentledger.query_api.audit import SpanFact, audit_run, link_writes, span_fact
from agentledger.query_api.audit_config import AuditConfig
from agentledger.query_api.findings import audit_context
from agentledger.query_api.models import Annotation, LinkedWrite, SpanEvent, Timeline, TimelineEntry
from agentledger.query_api.store import runs as run_store
from agentledger.query_api.store.runs import locate_run
from agentledger.query_api.times import rfc3339_nanos
from agentledger.query_api.writes import load_run_writes
from agentledger.schema import conventions as conv

# Per timeline type, the details shown: (detail name, spans column) or (detail name, "@attribute key").
_DETAILS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "run": (
        ("agent_name", "agent_name"),
        ("outcome", "run_outcome"),
        ("autonomy_level", "@" + conv.AGENTLEDGER_RUN_AUTONOMY_LEVEL),
        ("task", "@" + conv.AGENTLEDGER_RUN_TASK),
        ("input", "input_value"),
        ("output", "output_value"),
    ),
    "prompt": (
        ("operation", "operation"),
        ("model", "model"),
        ("context_hash", "context_hash"),
        ("context_sources", "@" + conv.AGENTLEDGER_PROMPT_CONTEXT_SOURCES),
        ("provenance", "provenance"),
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("system_instructions", "system_instructions"),
        ("input_messages", "input_messages"),
        ("output_messages", "output_messages"),
        ("input", "input_value"),
        ("output", "output_value"),
    ),
    "retrieval": (
        ("data_source", "@" + conv.GEN_AI_DATA_SOURCE_ID),
        ("query", "@" + conv.GEN_AI_RETRIEVAL_QUERY_TEXT),
        ("provenance", "provenance"),
        ("sources", "@" + conv.AGENTLEDGER_RETRIEVAL_SOURCES),
        ("documents", "retrieval_documents"),
        ("input", "input_value"),
        ("output", "output_value"),
    ),
    "tool_call": (
        ("tool_name", "tool_name"),
        ("tool_call_id", "tool_call_id"),
        ("access", "tool_access"),
        ("target", "target"),
        ("arguments_hash", "arguments_hash"),
        ("influenced_by", "@" + conv.AGENTLEDGER_TOOL_INFLUENCED_BY),
        ("provenance", "provenance"),
        ("arguments", "tool_arguments"),
        ("result", "tool_result"),
        ("input", "input_value"),
        ("output", "output_value"),
    ),
    "approval": (
        ("decision", "approval_decision"),
        ("approver", "approver"),
        ("tool_name", "tool_name"),
        ("tool_call_id", "@" + conv.AGENTLEDGER_APPROVAL_TOOL_CALL_ID),
        # Equal to the tool call's arguments hash when the executed arguments are the approved ones.
        ("arguments_hash", "arguments_hash"),
        ("reason", "@" + conv.AGENTLEDGER_APPROVAL_REASON),
    ),
    "policy_decision": (
        ("policy_id", "policy_id"),
        ("rule_id", "@" + conv.AGENTLEDGER_POLICY_RULE_ID),
        ("decision", "policy_decision"),
        ("reason", "@" + conv.AGENTLEDGER_POLICY_REASON),
    ),
    "downstream_write": (
        ("system", "write_system"),
        ("ref", "write_ref"),
        ("action", "@" + conv.AGENTLEDGER_WRITE_ACTION),
        ("tool_call_id", "@" + conv.AGENTLEDGER_WRITE_TOOL_CALL_ID),
        ("target", "target"),
    ),
    "span": (("input", "input_value"), ("output", "output_value")),
}


def _details(entry_type: str, row: Mapping[str, Any], attributes: Mapping[str, str]) -> dict[str, str | int]:
    details: dict[str, str | int] = {}
    for name, source in _DETAILS.get(entry_type, _DETAILS["span"]):
        value = attributes.get(source[1:], "") if source.startswith("@") else row[source]
        if value not in ("", 0, None):
            details[name] = value
    return details


def load_timeline(
    client: Client,
    tenant: str,
    run_id: str,
    span_url: Callable[[str], str] | None = None,
    audit_config: AuditConfig | None = None,
) -> Timeline | None:
    """The run's timeline, or None when the run index has no such run for this tenant. `span_url` makes each
    entry's link to the span in Phoenix."""
    location = locate_run(client, tenant, run_id)
    if location is None:
        return None
    summary = location.summary
    annotations = _annotations_by_span(client, tenant, run_id, summary.trace_ids)
    entries: list[TimelineEntry] = []
    facts: list[SpanFact] = []
    for row in run_store.run_span_rows(client, tenant, location):
        attributes: dict[str, str] = dict(row["attributes"])
        facts.append(span_fact(row))
        entry_type = row["entry_type"]
        start_ns, end_ns = int(row["start_ns"]), int(row["end_ns"])
        entries.append(
            TimelineEntry(
                type=entry_type,
                name=row["name"],
                trace_id=row["trace_id"],
                span_id=row["span_id"],
                parent_span_id=row["parent_span_id"],
                start_time=rfc3339_nanos(start_ns),
                start_unix_nano=start_ns,
                end_unix_nano=end_ns,
                duration_ms=(end_ns - start_ns) / 1e6,
                status=row["status_code"],
                status_message=row["status_message"],
                service_name=row["service_name"],
                agent_id=row["agent_id"],
                verified_agent_id=row["verified_agent_id"],
                identity_mismatch=bool(row["identity_mismatch"]),
                truncated=list(row["truncated"]),
                details=_details(entry_type, row, attributes),
                attributes=attributes,
                events=[
                    SpanEvent(name=name, time_unix_nano=int(time_ns), attributes=dict(event_attributes))
                    for name, time_ns, event_attributes in zip(
                        row["event_names"], row["event_times_ns"], row["event_attributes"], strict=True
                    )
                ],
                annotations=annotations.get(row["span_id"], []),
                phoenix_url=span_url(row["span_id"]) if span_url is not None else "",
            )
        )
    linked = link_writes(load_run_writes(client, tenant, run_id), facts)
    audit = audit_run(run_id, facts, linked, audit_context(client, tenant, location, audit_config))
    failed: dict[str, list[str]] = {}
    for finding in audit.findings:
        # Every span of a finding's evidence shows it; a write entry has no span id, only its ref.
        keys = list(finding.evidence) + (["write:" + finding.write_ref] if finding.write_ref else [])
        for key in dict.fromkeys(keys):
            if finding.rule not in failed.get(key, []):
                failed.setdefault(key, []).append(finding.rule)
    for entry in entries:
        entry.findings = failed.get(entry.span_id, [])
    entries.extend(_write_entry(item, failed.get("write:" + item.write.ref, [])) for item in linked)
    entries.sort(key=lambda e: (e.start_unix_nano, e.type == "write"))
    # The run index is filled by a materialized view whose part may become visible a moment after the
    # spans' own; what the spans just read say wins, so a timeline never shows a stale outcome or trace list.
    outcomes = [e.details["outcome"] for e in entries if e.type == "run" and e.details.get("outcome")]
    traces = sorted(set(summary.trace_ids) | {e.trace_id for e in entries if e.trace_id and e.type != "write"})
    summary = summary.model_copy(
        update={"outcome": str(outcomes[-1]) if outcomes else summary.outcome, "trace_ids": traces}
    )
    return Timeline(run=summary, entries=entries, writes=linked, audit=audit)


def _write_entry(item: LinkedWrite, findings: list[str]) -> TimelineEntry:
    write = item.write
    details: dict[str, str | int] = {
        key: value
        for key, value in (
            ("system", write.system),
            ("ref", write.ref),
            ("action", write.action),
            ("target", write.target),
            ("url", write.url),
            ("title", write.title),
            ("actor", write.actor),
            ("source", write.source),
            ("tool_call_id", write.tool_call_id),
            ("linked_by", item.tool_call.link if item.tool_call else ""),
        )
        if value
    }
    return TimelineEntry(
        type="write",
        name=f"{write.system} {write.action} {write.ref}",
        trace_id=item.tool_call.trace_id if item.tool_call else "",
        span_id="",
        parent_span_id="",
        start_time=write.occurred_at,
        start_unix_nano=write.occurred_unix_nano,
        end_unix_nano=write.occurred_unix_nano,
        duration_ms=0.0,
        status="UNSET",
        status_message="",
        service_name=write.system,
        agent_id="",
        verified_agent_id="",
        identity_mismatch=False,
        truncated=[],
        details=details,
        attributes={},
        events=[],
        linked_span_id=item.tool_call.span_id if item.tool_call else "",
        findings=findings,
    )


def _annotations_by_span(client: Client, tenant: str, run_id: str, trace_ids: list[str]) -> dict[str, list[Annotation]]:
    by_span: dict[str, list[Annotation]] = {}
    for row in run_store.run_annotation_rows(client, tenant, run_id, trace_ids):
        by_span.setdefault(row["span_id"], []).append(
            Annotation(
                name=row["name"],
                label=row["label"],
                score=row["score"],
                explanation=row["explanation"],
                annotator_kind=row["annotator_kind"],
                annotator=row["annotator"],
                source=row["source"],
                created_at=rfc3339_nanos(int(row["created_ns"])),
                updated_at=rfc3339_nanos(int(row["updated_ns"])),
            )
        )
    return by_span
