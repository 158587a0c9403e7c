"""A run's timeline as a Markdown incident report, for pasting into a post-mortem.

Every value from the record (names, ids, outcomes, messages, write fields) is untrusted: it goes in
through _text or _code, so no value can start a heading, a table row or cell, a link, HTML or a code
block, nor emphasise anything; only the report's own text is Markdown.
"""

from __future__ import annotations

import re
from typing import Final

from agentledger.query_api.models import Timeline, TimelineEntry
from agentledger.schema.presentation import REPORT_DETAILS

# Details too long for a table cell are cut; the JSON timeline has them whole.
MAX_CELL: Final = 160
# ASCII punctuation with a meaning somewhere in CommonMark or GitHub's Markdown (emphasis, code, links,
# HTML, entities, headings, tables, strikethrough, math); a backslash makes each one literal. An
# underscore between two letters or digits cannot emphasise (CommonMark's flanking rules), so
# snake_case names stay readable.
_MARKDOWN_PUNCTUATION: Final = re.compile(r"([\\`*\[\]<>#|~&$!]|(?<![^\W_])_|_(?![^\W_]))")
_LINE_BREAKS: Final = re.compile("[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
_BACKTICKS: Final = re.compile("`+")


def _visible(text: str) -> str:
    """Control and invisible formatting characters (bidirectional overrides, zero-width) made visible:
    C0 controls as their Control Pictures (U+2400 block), the others as [U+XXXX]."""
    if text.isprintable():
        return text
    out = []
    for character in text:
        code = ord(character)
        if character.isprintable() or character == " ":
            out.append(character)
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        else:
            out.append(f"[U+{code:04X}]")
    return "".join(out)


def _text(value: object, limit: int | None = MAX_CELL) -> str:
    """Untrusted text as inline Markdown that renders as exactly that text: line breaks become spaces,
    controls visible, punctuation escaped; cut to `limit` characters before escaping, so a cut never
    splits an escape."""
    text = _visible(" ".join(_LINE_BREAKS.sub(" ", str(value)).split()))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def _code(value: object, in_table: bool = False) -> str:
    """An untrusted identifier as a code span, every character shown (a line break as ␊): the fence is
    longer than any run of backticks inside, and in a table a pipe is escaped (GFM splits cells first)."""
    text = _visible(str(value))
    if not text:
        return "` `"
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def _what(entry: TimelineEntry) -> str:
    keys = REPORT_DETAILS.get(entry.type, ())
    return "; ".join(f"{key}: {_text(entry.details[key])}" for key in keys if key in entry.details)


# What run_page_url makes from a plain http(s) origin: shown as text, which viewers make clickable (the
# report has no Markdown link). Anything else (a Host header with Markdown in it) is shown as code.
_PAGE_URL: Final = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?/ui\?run=[A-Za-z0-9%._~\-]*$")


def timeline_markdown(timeline: Timeline, page_url: str = "") -> str:
    """The report; `page_url` (the run's responder page) is linked under the title when given."""
    run = timeline.run
    audit = timeline.audit
    lines = [
        f"# Incident report: run {_code(run.run_id)}",
        "",
    ]
    if page_url:
        lines += [
            f"Open the run: {_text(page_url) if _PAGE_URL.match(page_url) else _code(page_url)}",
            "",
        ]
    lines += [
        f"- Agent: {_text(run.agent_name or run.agent_id or 'unknown')} ({_code(run.agent_id)})",
        f"- Outcome: {_text(run.outcome or 'not reported')}",
        f"- Autonomy level: {_text(audit.autonomy_level or 'not reported')}",
        f"- Time: {_text(run.first_start)} to {_text(run.last_end)}",
        f"- Traces: {', '.join(_code(t) for t in run.trace_ids)}",
        f"- Spans: {run.span_count} ({run.error_count} with errors); downstream writes: {len(timeline.writes)}",
        "",
        "## Audit findings",
        "",
    ]
    if audit.findings:
        lines += [
            f"- **{_text(f.rule)}** v{f.rule_version} ({_text(f.severity)}): {_text(f.message)}"
            + (" (inferred)" if f.inferred else "")
            + (f" — evidence: {', '.join(_code(span_id) for span_id in f.evidence)}" if f.evidence else "")
            + (f" — write {_code(f.write_ref)}" if f.write_ref else "")
            for f in audit.findings
        ]
    else:
        checks = ", ".join(_text(check) for check in audit.checks)
        lines.append(f"None: all {len(audit.checks)} checks passed ({checks}).")
    if audit.approval_chains:
        lines += ["", "## Approval chains", ""]
        for chain in audit.approval_chains:
            ran = f"span {_code(chain.span_id)}" if chain.executed else "**never ran**"
            lines.append(f"- {_code(chain.tool_name)} {_code(chain.tool_call_id or '(no call id)')} ({ran}):")
            lines += [
                f"  - {_text(d.start_time)} {_text(d.type)} **{_text(d.decision)}** by {_text(d.by or 'unknown')}"
                + (f" (linked by {_text(d.linked_by)})" if d.linked_by != "tool_call_id" else "")
                for d in chain.decisions
            ]
    if timeline.integrity is not None:
        integrity = timeline.integrity
        lines += ["", "## Record integrity", "", f"**{_text(integrity.status)}**: {integrity.links} chain links,"
                  f" {integrity.spans_checked} stored spans checked; head {_code(integrity.head)}."]  # fmt: skip
        lines += [f"- link {b.seq}: {_text(b.problem)}" for b in integrity.chain_breaks]
        lines += [f"- span {_code(f.span_id)} {_text(f.problem)}" + (f" (link {f.link_seq})" if f.link_seq else "")
                  + (f" at {_text(f.at)}" if f.at else "") for f in integrity.findings]  # fmt: skip
    lines += ["", "## Downstream writes", ""]
    if timeline.writes:
        lines += ["| time | system | action | ref | made by |", "| --- | --- | --- | --- | --- |"]
        for item in timeline.writes:
            w, call = item.write, item.tool_call
            made_by = (
                f"{_code(call.tool_name or call.name, in_table=True)} span {_code(call.span_id, in_table=True)}"
                f" ({_text(call.link)}{', inferred' if call.inferred else ''})"
                if call
                else "**unaccounted**"
            )
            lines.append(
                f"| {_text(w.occurred_at)} | {_text(w.system)} | {_text(w.action)} | {_text(w.ref)} | {made_by} |"
            )
    else:
        lines.append("None reported.")
    lines += ["", "## Timeline", "", "| time | type | name | status | details | findings |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for entry in timeline.entries:
        status = _text(entry.status) + (f": {_text(entry.status_message)}" if entry.status_message else "")
        findings = ", ".join(f"**{_text(check)}**" for check in entry.findings)
        lines.append(
            f"| {_text(entry.start_time)} | {_text(entry.type)} | {_text(entry.name)} | {status} | {_what(entry)} |"
            f" {findings} |"
        )
    return "\n".join(lines) + "\n"
