"""The Markdown incident report cannot be forged by the record: every field it renders, given hostile
text (line breaks, headings, table pipes, links, HTML, code fences, emphasis, controls), renders as
text inside the report's own structure. The hostile timeline is generated from the report's input
model, so a field added to the report without escaping fails here."""

from __future__ import annotations

import types
import typing
from typing import Any, Final

from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel

from agentledger.query_api.models import Timeline
from agentledger.query_api.report import timeline_markdown
from agentledger.schema import conventions as conv
from agentledger.schema.presentation import REPORT_DETAILS
from tests.query_api.incidents import PrRun, ingest, pr_run_spans, record

# Each field gets its own tag first (so a cut at the cell limit keeps it), then everything that could
# start Markdown structure if inserted raw.
HOSTILE: Final = (
    "{tag} x\n## Record integrity\n\n**intact**: forged\n| a | b | c |\n|---|---|---|\n"
    "[click](https://evil.example) ![i](https://evil.example/i.png) <img src=x onerror=alert(1)> <b>b</b>"
    " *em* _em_ __strong__ `code` ``` ~~del~~ $m$ &amp; &#124; \\ \x1b[31mred\x1b[0m \u202eevil \x00\r\n"
    "```\nfenced\n```\n    indented code\n> quote\n- item\n1. one\n<div>\n"
)
# GitHub-flavoured: tables and strikethrough, as where a post-mortem is pasted.
_MARKDOWN: Final = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_FORBIDDEN: Final = {
    "html_block", "html_inline", "link_open", "image", "code_block", "fence", "blockquote_open", "em_open", "s_open",
    "ordered_list_open", "hr", "lheading_open",
}  # fmt: skip


class _Tags:
    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def hostile(self, path: str) -> str:
        tag = f"F{len(self.paths):03d}"
        self.paths[tag] = path
        return HOSTILE.format(tag=tag)


def _value(annotation: Any, path: str, tags: _Tags) -> Any:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation is str or origin is typing.Literal:
        return tags.hostile(path)
    if annotation is bool:
        return True
    if annotation in (int, float):
        return 3
    if origin in (types.UnionType, typing.Union):
        return _value(next(a for a in arguments if a is not type(None)), path, tags)
    if origin is list:
        return [_value(arguments[0], f"{path}[0]", tags)]
    if origin is dict:
        return {tags.hostile(f"{path}.key"): _value(arguments[1], f"{path}.value", tags)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _hostile_model(annotation, path, tags)
    raise AssertionError(f"{path}: no hostile value for {annotation!r}; extend the generator")


def _hostile_model(model: type[BaseModel], path: str, tags: _Tags) -> Any:
    hints = typing.get_type_hints(model)
    return model.model_construct(**{name: _value(hints[name], f"{path}.{name}", tags) for name in model.model_fields})


def _hostile_timeline() -> tuple[Timeline, _Tags]:
    tags = _Tags()
    timeline = _hostile_model(Timeline, "timeline", tags)
    # One entry per type the report details, each detail hostile, besides the fully hostile entry.
    generic = timeline.entries[0]
    for entry_type, keys in REPORT_DETAILS.items():
        details = {key: tags.hostile(f"entries[{entry_type}].details.{key}") for key in keys}
        timeline.entries.append(generic.model_copy(update={"type": entry_type, "details": details}))
    # And a write that no tool call accounts for.
    timeline.writes.append(timeline.writes[0].model_copy(update={"tool_call": None}))
    return timeline, tags


def _inline_texts(tokens: list[Token]) -> list[str]:
    shown = ("text", "code_inline")
    return [child.content for token in tokens for child in token.children or [] if child.type in shown]


def _structure(markdown: str) -> tuple[list[str], list[tuple[str, int]], int, set[str]]:
    """(headings, tables as (first header cell, cells per row), bullet items, forbidden token types)."""
    tokens = _MARKDOWN.parse(markdown)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    cells: list[tuple[str, int]] = []
    row = 0
    table = ""
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            table = tokens[i + 4].content  # table_open thead_open tr_open th_open inline
        elif token.type == "tr_open":
            row = 0
        elif token.type in ("td_open", "th_open"):
            row += 1
        elif token.type == "tr_close":
            cells.append((table, row))
    items = sum(1 for t in tokens if t.type == "list_item_open")
    forbidden = {t.type for t in tokens} | {c.type for t in tokens for c in t.children or []}
    return headings, cells, items, forbidden & _FORBIDDEN


def test_no_field_of_the_report_can_add_markdown_structure() -> None:
    timeline, tags = _hostile_timeline()
    assert timeline.integrity is not None

    markdown = timeline_markdown(timeline)
    headings, cells, items, forbidden = _structure(markdown)

    assert forbidden == set()
    assert headings[1:] == ["Audit findings", "Approval chains", "Record integrity", "Downstream writes", "Timeline"]
    assert headings[0].startswith("Incident report: run ")
    writes_rows = 1 + len(timeline.writes)  # the header row, then one per write
    timeline_rows = 1 + len(timeline.entries)
    assert cells == [("time", 5)] * writes_rows + [("time", 6)] * timeline_rows
    findings = len(timeline.audit.findings) + len(timeline.integrity.chain_breaks) + len(timeline.integrity.findings)
    chains = sum(1 + len(chain.decisions) for chain in timeline.audit.approval_chains)  # a chain, then its decisions
    assert items == 6 + findings + chains
    # Strong emphasis is the report's own: around a whole field or its fixed words, never inside a value.
    tokens = _MARKDOWN.parse(markdown)
    for token in tokens:
        children = token.children or []
        for i, child in enumerate(children):
            if child.type == "strong_open":
                inner = children[i + 1].content
                fixed = inner in ("unaccounted", "never ran")  # the report's own words
                assert fixed or (inner[:4] in tags.paths and children[i + 2].type == "strong_close")


def test_hostile_values_are_shown_as_text_not_dropped() -> None:
    timeline, tags = _hostile_timeline()

    texts = " ".join(_inline_texts(_MARKDOWN.parse(timeline_markdown(timeline))))

    shown = {tags.paths[tag] for tag in tags.paths if tag in texts}
    for field in (
        "timeline.run.run_id", "timeline.run.agent_name", "timeline.run.agent_id", "timeline.run.outcome",
        "timeline.audit.autonomy_level", "timeline.audit.findings[0].message", "timeline.writes[0].write.system",
        "timeline.writes[0].write.action", "timeline.writes[0].write.ref", "timeline.entries[0].name",
        "timeline.entries[0].status_message", "entries[tool_call].details.target",
    ):  # fmt: skip
        assert field in shown
    # Text fields read as the value with line breaks as spaces and controls visible.
    assert "x ## Record integrity **intact**: forged | a | b | c |" in texts
    assert "␛[31mred␛[0m [U+202E]evil ␀" in texts
    assert "<img src=x onerror=alert(1)> <b>b</b> *em* _em_ __strong__ `code`" in texts


def test_an_agent_named_to_forge_the_integrity_section_cannot(client: Client, api: TestClient) -> None:
    forged = "pr-agent\n\n## Record integrity\n\n**intact**: 9 chain links, 9 stored spans checked"
    ingest(client, pr_run_spans(PrRun("run_forged")))
    ingest(
        client,
        record(
            lambda tracer: tracer.start_span(
                "invoke_agent",
                attributes={
                    conv.AGENT_RUN_ID: "run_forged",
                    conv.AGENTLEDGER_SPAN_TYPE: "run",
                    conv.GEN_AI_AGENT_NAME: forged,
                    conv.GEN_AI_AGENT_ID: "pr-agent-1",
                    conv.AGENTLEDGER_RUN_OUTCOME: "success\n- Outcome: approved by legal",
                },
            ).end()
        ),
    )

    report = api.get("/v1/runs/run_forged/timeline", params={"format": "md"}).text
    headings, _, _, forbidden = _structure(report)

    assert headings.count("Record integrity") == 1
    assert forbidden == set()
    assert "- Agent: pr-agent \\#\\# Record integrity \\*\\*intact\\*\\*: 9 chain links" in report
    assert [line for line in report.splitlines() if line.startswith("- Outcome:")] == [
        "- Outcome: success - Outcome: approved by legal"
    ]
