"""Builds a run's incident timeline: the run index row, then the run's spans in time order, typed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from agentledger.query_api.audit import AuditContext, SpanFact, audit_run, link_writes, span_fact
from agentledger.query_api.audit_config import AuditConfig
from agentledger.query_api.findings import tool_catalogue
from agentledger.query_api.models import Annotation, LinkedWrite, SpanEvent, Timeline, TimelineEntry
from agentledger.query_api.read_pool import Reads
from agentledger.query_api.store import runs as run_store
from agentledger.query_api.store.runs import locate_run
from agentledger.query_api.times import rfc3339_nanos
from agentledger.query_api.writes import load_run_writes
from agentledger.schema.presentation import TIMELINE_DETAILS


def _details(entry_type: str, row: Mapping[str, Any], attributes: Mapping[str, str]) -> dict[str, str | int]:
    details: dict[str, str | int] = {}
    for name, source in TIMELINE_DETAILS.get(entry_type, TIMELINE_DETAILS["span"]):
        value = attributes.get(source[1:], "") if source.startswith("@") else row[source]
        if value not in ("", 0, None):
            details[name] = value
    return details


def load_timeline(
    reads: Reads,
    tenant: str,
    run_id: str,
    span_url: Callable[[str], str] | None = None,
    audit_config: AuditConfig | None = None,
) -> Timeline | None:
    """The run's timeline, or None when the run index has no such run for this tenant. `span_url` makes each
    entry's link to the span in Phoenix. Its seven reads run at once where they can (query_api/read_pool.py):
    the run's index row first, as the span reads, annotations and baseline need where the run is; its writes
    and the tenant's catalogue beside it."""
    config = audit_config or AuditConfig()
    # Submitted in the order of the longest path: the index row, then the span read it unlocks.
    found = reads.submit(lambda client: locate_run(client, tenant, run_id))
    run_writes = reads.submit(lambda client: load_run_writes(client, tenant, run_id))
    catalogue = reads.submit(lambda client: tool_catalogue(client, tenant, config))
    location = found.result()
    if location is None:
        return None
    summary = location.summary
    span_rows = reads.submit(lambda client: list(run_store.run_span_rows(client, tenant, location)))
    baselines = reads.submit(
        lambda client: run_store.load_token_baselines(client, tenant, [location], config.cost.baseline_runs)
    )
    annotations_of = reads.submit(lambda client: _annotations_by_span(client, tenant, run_id, summary.trace_ids))
    annotations = annotations_of.result()
    entries: list[TimelineEntry] = []
    facts: list[SpanFact] = []
    for row in span_rows.result():
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
    linked = link_writes(run_writes.result(), facts)
    context = AuditContext(config, catalogue.result(), baselines.result().get(location.run_id, []))
    audit = audit_run(run_id, facts, linked, context)
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
    record: dict[str, str] = {**write.model_dump(), "linked_by": item.tool_call.link if item.tool_call else ""}
    details: dict[str, str | int] = {}
    for name, source in TIMELINE_DETAILS["write"]:
        value = record.get(source.removeprefix("."), "")
        if value:
            details[name] = value
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
