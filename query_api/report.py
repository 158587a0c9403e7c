"""A run's timeline as a Markdown incident report, for pasting into a post-mortem."""

from __future__ import annotations

from typing import Final

from agentledger.query_api.models import Timeline, TimelineEntry

# Details too long for a table cell are cut; the JSON timeline has them whole.
MAX_CELL: Final = 160


def _cell(value: object) -> str:
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _what(entry: TimelineEntry) -> str:
    keys = {
        "tool_call": ("tool_name", "tool_call_id", "access", "target", "influenced_by"),
        "approval": ("decision", "approver", "tool_call_id", "reason"),
        "policy_decision": ("policy_id", "decision", "reason"),
        "retrieval": ("data_source", "provenance", "sources"),
        "prompt": ("model", "context_hash", "provenance"),
        "downstream_write": ("system", "ref", "action", "tool_call_id"),
        "write": ("system", "action", "ref", "target", "source", "linked_by"),
        "run": ("agent_name", "autonomy_level", "outcome", "task"),
    }.get(entry.type, ())
    return "; ".join(f"{key}: {_cell(entry.details[key])}" for key in keys if key in entry.details)


def timeline_markdown(timeline: Timeline) -> str:
    run = timeline.run
    audit = timeline.audit
    lines = [
        f"# Incident report: run `{run.run_id}`",
        "",
        f"- Agent: {run.agent_name or run.agent_id or 'unknown'} (`{run.agent_id}`)",
        f"- Outcome: {run.outcome or 'not reported'}",
        f"- Autonomy level: {audit.autonomy_level or 'not reported'}",
        f"- Time: {run.first_start} to {run.last_end}",
        f"- Traces: {', '.join(f'`{t}`' for t in run.trace_ids)}",
        f"- Spans: {run.span_count} ({run.error_count} with errors); downstream writes: {len(timeline.writes)}",
        "",
        "## Audit findings",
        "",
    ]
    if audit.findings:
        lines += [
            f"- **{f.check}** ({f.severity}): {_cell(f.message)}"
            + (f" — span `{f.span_id}`" if f.span_id else "")
            + (f" — write `{f.write_ref}`" if f.write_ref else "")
            for f in audit.findings
        ]
    else:
        lines.append(f"None: all {len(audit.checks)} checks passed ({', '.join(audit.checks)}).")
    if timeline.integrity is not None:
        integrity = timeline.integrity
        lines += ["", "## Record integrity", "", f"**{integrity.status}**: {integrity.links} chain links,"
                  f" {integrity.spans_checked} stored spans checked; head `{integrity.head}`."]  # fmt: skip
        lines += [f"- link {b.seq}: {b.problem}" for b in integrity.chain_breaks]
        lines += [f"- span `{f.span_id}` {f.problem}" + (f" (link {f.link_seq})" if f.link_seq else "")
                  + (f" at {f.at}" if f.at else "") for f in integrity.findings]  # fmt: skip
    lines += ["", "## Downstream writes", ""]
    if timeline.writes:
        lines += ["| time | system | action | ref | made by |", "| --- | --- | --- | --- | --- |"]
        for item in timeline.writes:
            w, call = item.write, item.tool_call
            made_by = (
                f"`{call.tool_name or call.name}` span `{call.span_id}` ({call.link})" if call else "**unaccounted**"
            )
            lines.append(f"| {w.occurred_at} | {w.system} | {w.action} | {_cell(w.ref)} | {made_by} |")
    else:
        lines.append("None reported.")
    lines += ["", "## Timeline", "", "| time | type | name | status | details | findings |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for entry in timeline.entries:
        status = entry.status + (f": {_cell(entry.status_message)}" if entry.status_message else "")
        findings = ", ".join(f"**{check}**" for check in entry.findings)
        lines.append(
            f"| {entry.start_time} | {entry.type} | {_cell(entry.name)} | {status} | {_what(entry)} | {findings} |"
        )
    return "\n".join(lines) + "\n"
