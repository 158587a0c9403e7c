"""Builds a run's incident timeline: the run index row, then the run's spans in time order, typed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from agentledger.query_api import queries
from agentledger.query_api.models import Annotation, RunSummary, SpanEvent, Timeline, TimelineEntry
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


def rfc3339_nanos(unix_nano: int) -> str:
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _details(entry_type: str, row: Mapping[str, Any], attributes: Mapping[str, str]) -> dict[str, str | int]:
    details: dict[str, str | int] = {}
    for name, source in _DETAILS.get(entry_type, _DETAILS["span"]):
        value = attributes.get(source[1:], "") if source.startswith("@") else row[source]
        if value not in ("", 0, None):
            details[name] = value
    return details


@dataclass(frozen=True)
class RunLocation:
    """A run index row: the summary shown, and the exact time range (ns) its spans lie in."""

    summary: RunSummary
    first_start_ns: int
    last_end_ns: int


def locate_run(client: Client, tenant: str, run_id: str) -> RunLocation | None:
    result = client.query(queries.RUN_SUMMARY, parameters={"tenant": tenant, "run_id": run_id})
    rows = list(result.named_results())
    if not rows:
        return None
    row = rows[0]
    summary = RunSummary(
        run_id=row["run_id"],
        agent_id=row["agent_id"],
        agent_name=row["agent_name"],
        outcome=row["outcome"],
        trace_ids=sorted(row["trace_ids"]),
        first_start=rfc3339_nanos(int(row["first_start_ns"])),
        last_end=rfc3339_nanos(int(row["last_end_ns"])),
        span_count=int(row["span_count"]),
        error_count=int(row["error_count"]),
    )
    return RunLocation(summary, int(row["first_start_ns"]), int(row["last_end_ns"]))


def load_timeline(
    client: Client, tenant: str, run_id: str, span_url: Callable[[str], str] | None = None
) -> Timeline | None:
    """The run's timeline, or None when the run index has no such run for this tenant. `span_url` makes each
    entry's link to the span in Phoenix."""
    location = locate_run(client, tenant, run_id)
    if location is None:
        return None
    summary = location.summary
    result = client.query(
        queries.RUN_SPANS,
        parameters={
            "tenant": tenant,
            "run_id": run_id,
            "trace_ids": summary.trace_ids,
            "from_ns": location.first_start_ns - queries.TIME_MARGIN_NS,
            "to_ns": location.last_end_ns + queries.TIME_MARGIN_NS,
        },
    )
    annotations = _annotations_by_span(client, tenant, run_id, summary.trace_ids)
    entries = []
    for row in result.named_results():
        attributes: dict[str, str] = dict(row["attributes"])
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
    return Timeline(run=summary, entries=entries)


def _annotations_by_span(client: Client, tenant: str, run_id: str, trace_ids: list[str]) -> dict[str, list[Annotation]]:
    result = client.query(
        queries.RUN_ANNOTATIONS, parameters={"tenant": tenant, "run_id": run_id, "trace_ids": trace_ids}
    )
    by_span: dict[str, list[Annotation]] = {}
    for row in result.named_results():
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
