"""Runs in storage: where a run's spans are, its spans as the audit reads them (one run or a page of runs
in one read), its writes, its agent's cost baseline, the listing, and its annotations."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from clickhouse_connect.driver.client import Client

from agentledger.query_api import queries
from agentledger.query_api.audit import FACT_KEYS, SpanFact
from agentledger.query_api.models import RunSummary, WriteRecord
from agentledger.query_api.times import rfc3339_nanos
from agentledger.query_api.writes import distinct_writes

_MAX_INT64: Final = 2**63 - 1

_Row = TypeVar("_Row")


def first_copies(rows: Iterable[_Row], key: Callable[[_Row], tuple[int, str, str]]) -> list[_Row]:
    """The rows of a span read in (start ns, trace id, span id) order, with only the first copy of each
    (trace id, span id): what `ORDER BY start_time, trace_id, span_id LIMIT 1 BY trace_id, span_id` gave,
    done here because those two steps over wide rows cost chDB more than the read (RUN_SPANS). Python
    orders str by code point, which for UTF-8 is ClickHouse's byte order."""
    ordered = sorted(rows, key=key)
    seen: set[tuple[str, str]] = set()
    kept: list[_Row] = []
    for row in ordered:
        _, trace_id, span_id = key(row)
        if (trace_id, span_id) not in seen:
            seen.add((trace_id, span_id))
            kept.append(row)
    return kept


@dataclass(frozen=True)
class RunLocation:
    """A run index row: the summary shown, and the exact time range (ns) its spans lie in."""

    summary: RunSummary
    first_start_ns: int
    last_end_ns: int

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    @property
    def from_ns(self) -> int:
        return self.first_start_ns - queries.TIME_MARGIN_NS

    @property
    def to_ns(self) -> int:
        return self.last_end_ns + queries.TIME_MARGIN_NS


def _location(row: Mapping[str, Any]) -> RunLocation:
    summary = RunSummary(
        run_id=row["run_id"],
        agent_id=row["agent_id"],
        agent_name=row.get("agent_name", ""),
        outcome=row.get("outcome", ""),
        trace_ids=sorted(row["trace_ids"]),
        first_start=rfc3339_nanos(int(row["first_start_ns"])),
        last_end=rfc3339_nanos(int(row["last_end_ns"])),
        span_count=int(row.get("span_count", 0)),
        error_count=int(row.get("error_count", 0)),
    )
    return RunLocation(summary, int(row["first_start_ns"]), int(row["last_end_ns"]))


def locate_run(client: Client, tenant: str, run_id: str) -> RunLocation | None:
    rows = list(client.query(queries.RUN_SUMMARY, parameters={"tenant": tenant, "run_id": run_id}).named_results())
    return _location(rows[0]) if rows else None


def locate_runs(client: Client, tenant: str, run_ids: Sequence[str]) -> list[RunLocation]:
    if not run_ids:
        return []
    result = client.query(queries.RUNS_LOCATIONS, parameters={"tenant": tenant, "run_ids": list(run_ids)})
    return [_location(row) for row in result.named_results()]


def _span_facts(result: Any) -> list[SpanFact]:
    """Rows of RUN_FACT_SPANS / RUNS_FACT_SPANS as facts in time order, one per span (first_copies), read by
    position (a page of runs is tens of thousands of rows: no dict per row); their attributes are already
    cut to FACT_KEYS by the query."""
    index = {name: position for position, name in enumerate(result.column_names)}

    def column(name: str) -> int:
        return index[name]

    (run_id, trace_id, span_id, parent, start, end, name, status, entry_type, provenance, tool_name, call_id,
     access, target, agent_id, input_tokens, output_tokens, arguments_hash, approval, approver, policy_id, policy,
     write_system, write_ref, arguments, result_text, documents, input_value, output_value, attributes) = (
        column(key) for key in (
            "run_id", "trace_id", "span_id", "parent_span_id", "start_ns", "end_ns", "name", "status_code",
            "entry_type", "provenance", "tool_name", "tool_call_id", "tool_access", "target", "agent_id",
            "input_tokens", "output_tokens", "arguments_hash", "approval_decision", "approver", "policy_id",
            "policy_decision", "write_system", "write_ref", "tool_arguments", "tool_result", "retrieval_documents",
            "input_value", "output_value", "attributes",
        )
    )  # fmt: skip
    return [
        SpanFact(
            trace_id=row[trace_id], span_id=row[span_id], parent_span_id=row[parent], start_ns=int(row[start]),
            end_ns=int(row[end]), name=row[name], entry_type=row[entry_type], status=row[status],
            provenance=row[provenance], tool_name=row[tool_name], tool_call_id=row[call_id], tool_access=row[access],
            target=row[target], approval_decision=row[approval], policy_decision=row[policy],
            write_system=row[write_system], write_ref=row[write_ref], attributes=row[attributes],
            run_id=row[run_id], agent_id=row[agent_id], approver=row[approver], policy_id=row[policy_id],
            arguments_hash=row[arguments_hash], input_tokens=int(row[input_tokens]),
            output_tokens=int(row[output_tokens]), tool_arguments=row[arguments], tool_result=row[result_text],
            retrieval_documents=row[documents], input_value=row[input_value], output_value=row[output_value],
        )
        for row in first_copies(result.result_rows, lambda row: (int(row[start]), row[trace_id], row[span_id]))
    ]  # fmt: skip


def load_span_facts(
    client: Client, tenant: str, run_id: str, trace_ids: Sequence[str], from_ns: int, to_ns: int
) -> list[SpanFact]:
    result = client.query(
        queries.RUN_FACT_SPANS,
        parameters={"tenant": tenant, "run_id": run_id, "trace_ids": list(trace_ids), "from_ns": from_ns,
                    "to_ns": to_ns, "fact_keys": list(FACT_KEYS)},
    )  # fmt: skip
    return _span_facts(result)


def load_runs_span_facts(client: Client, tenant: str, runs: Sequence[RunLocation]) -> dict[str, list[SpanFact]]:
    """The spans of many runs in one read (RUNS_MEMBERSHIP); a span adopted through its trace goes to the
    run whose trace it is in."""
    if not runs:
        return {}
    owner_of_trace = {trace_id: run.run_id for run in runs for trace_id in run.summary.trace_ids}
    wanted = {run.run_id for run in runs}
    result = client.query(
        queries.RUNS_FACT_SPANS,
        parameters={"tenant": tenant, "run_ids": sorted(wanted), "trace_ids": sorted(owner_of_trace),
                    "from_ns": min(run.from_ns for run in runs), "to_ns": max(run.to_ns for run in runs),
                    "fact_keys": list(FACT_KEYS)},
    )  # fmt: skip
    by_run: dict[str, list[SpanFact]] = {run.run_id: [] for run in runs}
    for fact in _span_facts(result):
        run_id = fact.run_id if fact.run_id in wanted else owner_of_trace.get(fact.trace_id, "")
        if run_id in by_run:
            by_run[run_id].append(fact)
    return by_run


@dataclass(frozen=True)
class RefLookup:
    """What the reverse lookup reads for a reference: per run (the `limit` runs that wrote or logged a write
    span for it last) its writes of the reference in time order, where the runs the index knows are, and
    per located run its spans with what linking a write reads (content left empty)."""

    writes: dict[str, list[WriteRecord]]
    locations: list[RunLocation]
    spans: dict[str, list[SpanFact]]


def load_ref_lookup(client: Client, tenant: str, ref: str, limit: int) -> RefLookup:
    """The reverse lookup's rows in one read (REF_LOOKUP), deduplicated and ordered as its three reads did."""
    result = client.query(
        queries.REF_LOOKUP,
        parameters={"tenant": tenant, "ref": ref, "limit": limit, "margin_ns": queries.TIME_MARGIN_NS,
                    "fact_keys": list(FACT_KEYS)},
    )  # fmt: skip
    parts: dict[str, list[dict[str, Any]]] = {"write": [], "location": [], "span": []}
    for part, run_id, texts, numbers, trace_ids, attributes in result.result_rows:
        # Each part's values by the names REF_LOOKUP packs them under, as one run's reads name them.
        row: dict[str, Any] = dict(zip(queries.REF_LOOKUP_TEXTS[part], texts, strict=True))
        row |= zip(queries.REF_LOOKUP_NUMBERS[part], numbers, strict=True)
        row |= {"run_id": run_id, "trace_ids": trace_ids, "attributes": attributes}
        parts[part].append(row)
    # Deduplicated and ordered as one run's reads are (RUN_WRITES, RUN_FACT_SPANS): a redelivered write as its
    # newest copy, a replayed span as its earliest.
    writes: dict[str, list[WriteRecord]] = {}
    for record in distinct_writes(parts["write"]):
        writes.setdefault(record.run_id, []).append(record)
    locations = [_location(row) for row in parts["location"]]
    spans = first_copies(parts["span"], lambda row: (int(row["start_ns"]), str(row["trace_id"]), str(row["span_id"])))
    return RefLookup(writes, locations, _link_spans_by_run(spans, locations))


def _link_spans_by_run(rows: Sequence[Mapping[str, Any]], runs: Sequence[RunLocation]) -> dict[str, list[SpanFact]]:
    """Per run, of the spans read for linking, exactly those RUN_MEMBERSHIP and its own time range select, as
    one run's read would."""
    by_run: dict[str, list[SpanFact]] = {run.run_id: [] for run in runs}
    traces = {run.run_id: set(run.summary.trace_ids) for run in runs}
    for row in rows:
        fact = SpanFact(
            trace_id=row["trace_id"], span_id=row["span_id"], parent_span_id=row["parent_span_id"],
            start_ns=int(row["start_ns"]), end_ns=int(row["end_ns"]), name=row["name"],
            entry_type=row["entry_type"], status=row["status_code"], provenance=row["provenance"],
            tool_name=row["tool_name"], tool_call_id=row["tool_call_id"], tool_access=row["tool_access"],
            target=row["target"], approval_decision=row["approval_decision"],
            policy_decision=row["policy_decision"], write_system=row["write_system"], write_ref=row["write_ref"],
            attributes=row["attributes"], run_id=row["run_id"],
        )  # fmt: skip
        for run in runs:
            own = traces[run.run_id]
            member = (
                fact.run_id == run.run_id
                or (fact.run_id == fact.trace_id and fact.run_id in own)
                or (fact.run_id == "" and fact.trace_id in own)
            )
            if member and run.from_ns <= fact.start_ns <= run.to_ns:
                by_run[run.run_id].append(fact)
    return by_run


def load_runs_writes(client: Client, tenant: str, run_ids: Sequence[str]) -> dict[str, list[WriteRecord]]:
    by_run: dict[str, list[WriteRecord]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return by_run
    result = client.query(queries.RUNS_WRITES, parameters={"tenant": tenant, "run_ids": list(run_ids)})
    for record in distinct_writes(result.named_results()):
        by_run.setdefault(record.run_id, []).append(record)
    return by_run


# The first window of the time-ordered run index a reader takes: this many rows per run it needs (a run's
# spans may have arrived in a few insert blocks, one row each) plus a constant; each further window is
# WINDOW_GROWTH times larger, and past MAX_WINDOW rows the listing groups the whole index instead.
WINDOW_ROWS_PER_RUN: Final = 4
WINDOW_MIN_ROWS: Final = 64
WINDOW_GROWTH: Final = 8
MAX_WINDOW: Final = 50_000
# Below every start a window's floor can have: the floor of a window that holds every row of the range.
_NO_FLOOR: Final = -(2**63)


@dataclass(frozen=True)
class RunWindow:
    """The newest rows of the time-ordered run index in a time range: the candidate run ids, and the
    floor above which every run of the range is among them (a run's earliest row is its exact start);
    `rows` are the window's (run id, start ns, agent id) rows, newest first."""

    candidates: list[str]
    floor_ns: int
    complete: bool  # the window holds every row of the range
    rows: list[tuple[str, int, str]]


def newest_runs_window(client: Client, tenant: str, from_ns: int, to_ns: int, rows: int) -> RunWindow:
    result = client.query(
        queries.RUN_STARTS_WINDOW,
        parameters={"tenant": tenant, "from_ns": from_ns, "to_ns": min(to_ns, _MAX_INT64), "scan": rows},
    )
    found = [(str(run_id), int(start_ns), str(agent_id)) for run_id, start_ns, agent_id in result.result_rows]
    complete = len(found) < rows
    # Only runs that started strictly after the window's oldest row are sure to be complete: another run
    # may have a row at that very time beyond the window.
    floor_ns = _NO_FLOOR if complete else found[-1][1]
    return RunWindow(list(dict.fromkeys(row[0] for row in found)), floor_ns, complete, found)


def first_window_rows(runs: int) -> int:
    return WINDOW_ROWS_PER_RUN * runs + WINDOW_MIN_ROWS


@dataclass(frozen=True)
class RecentRun:
    """One of an agent's latest runs, as the cost baseline takes it from a window of the run index."""

    run_id: str
    agent_id: str
    first_start_ns: int


def agents_recent_runs(window: RunWindow, agents: Iterable[str], per_agent: int) -> list[RecentRun]:
    """Of the window's runs known to be complete (started after its floor), those of these agents, at most
    `per_agent` per agent, newest first (start, then run id, descending). A run's start and agent are those
    of all its rows (the earliest start, the greatest agent id), as the run index gives them once merged;
    every row of such a run is in the window, since each of its rows started at or after its start. (The
    runs read this replaces filtered a run's unmerged rows by agent before grouping them; a run whose insert
    blocks name different agents is the only one it could have credited otherwise.)"""
    start_of: dict[str, int] = {}
    agent_of: dict[str, str] = {}
    for run_id, start_ns, agent_id in window.rows:
        start_of[run_id] = min(start_ns, start_of.get(run_id, start_ns))
        agent_of[run_id] = max(agent_id, agent_of.get(run_id, agent_id))
    wanted = set(agents)
    ordered = sorted(
        ((start_ns, run_id) for run_id, start_ns in start_of.items()
         if start_ns > window.floor_ns and agent_of[run_id] in wanted),
        reverse=True,
    )  # fmt: skip
    taken: dict[str, int] = {}
    recent: list[RecentRun] = []
    for start_ns, run_id in ordered:
        agent = agent_of[run_id]
        if taken.get(agent, 0) < per_agent:
            taken[agent] = taken.get(agent, 0) + 1
            recent.append(RecentRun(run_id, agent, start_ns))
    return recent


def load_token_baselines(
    client: Client, tenant: str, runs: Sequence[RunLocation], per_agent: int
) -> dict[str, list[int]]:
    """Per run: the total tokens of its agent's latest `per_agent` runs that started before it, newest first.
    Two reads: a window of the time-ordered run index (grown until it holds enough of each agent's runs),
    then the tokens of the runs picked from it."""
    agents = sorted({run.summary.agent_id for run in runs if run.summary.agent_id})
    if not agents:
        return {}
    until_ns = max(run.first_start_ns for run in runs)
    page_runs = len(runs)
    wanted = per_agent + page_runs
    window_rows = first_window_rows(wanted * len(agents))
    while True:
        # The agents' newest runs are found in growing windows of the time-ordered index (one key range
        # each) rather than by grouping the agents' whole history.
        window = newest_runs_window(client, tenant, 0, until_ns, window_rows)
        found = agents_recent_runs(window, agents, wanted)
        per_agent_found: dict[str, int] = {}
        for recent in found:
            per_agent_found[recent.agent_id] = per_agent_found.get(recent.agent_id, 0) + 1
        if window.complete or all(per_agent_found.get(agent, 0) >= wanted for agent in agents):
            break
        window_rows *= WINDOW_GROWTH
    tokens_of: dict[str, int] = {}
    if found:
        copies = client.query(
            queries.RUNS_TOKENS, parameters={"tenant": tenant, "run_ids": [recent.run_id for recent in found]}
        ).result_rows
        # One copy of each span counts (a replayed copy carries the same tokens).
        of_span = {
            (str(run_id), str(trace_id), str(span_id)): int(tokens) for run_id, trace_id, span_id, tokens in copies
        }
        for (run_id, _, _), tokens in of_span.items():
            tokens_of[run_id] = tokens_of.get(run_id, 0) + tokens
    history: dict[str, list[tuple[int, str, int]]] = {}
    for recent in found:
        history.setdefault(recent.agent_id, []).append(
            (recent.first_start_ns, recent.run_id, tokens_of.get(recent.run_id, 0))
        )
    ordered = {agent: sorted(rows) for agent, rows in history.items()}  # oldest first, for bisection
    baselines: dict[str, list[int]] = {}
    for run in runs:
        rows = ordered.get(run.summary.agent_id, [])
        before = bisect.bisect_left(rows, (run.first_start_ns, run.run_id))
        baselines[run.run_id] = [tokens for _, _, tokens in reversed(rows[max(0, before - per_agent) : before])]
    return baselines


def list_usage(
    client: Client, tenant: str, run_ids: Sequence[str], prices: tuple[list[str], list[float], list[float]]
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """For the listed runs: workflow, tokens and cost at these prices, and downstream writes, each write
    counted once however many copies of it are stored (a redelivered webhook); one read per page
    (RUN_LIST_USAGE)."""
    models, price_in, price_out = prices
    result = client.query(
        queries.RUN_LIST_USAGE,
        parameters={"tenant": tenant, "run_ids": list(run_ids), "price_models": models, "price_in": price_in,
                    "price_out": price_out},
    )  # fmt: skip
    usage: dict[str, dict[str, Any]] = {}
    written: set[tuple[str, str, str, int]] = set()
    for row in result.named_results():
        if row["part"] == "usage":
            usage[str(row["run_id"])] = row
        else:
            written.add((str(row["run_id"]), str(row["system"]), str(row["ref"]), int(row["occurred_ns"])))
    writes: dict[str, int] = {}
    for run_id, _, _, _ in written:
        writes[run_id] = writes.get(run_id, 0) + 1
    return usage, writes


def list_runs(client: Client, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One page of the runs listing as rows: the candidates of growing windows of the time-ordered run
    index read by key (RUN_LIST), until the page is full or the window holds every run of the range;
    a filter so selective that the window grows past MAX_WINDOW rows groups the whole index instead."""
    limit = int(parameters["limit"])
    filters = (bool(parameters["workflow"]), bool(parameters["target"]))
    upper_ns = min(int(parameters["to_ns"]), int(parameters["cursor_ns"]))
    window_rows = first_window_rows(limit)
    while window_rows <= MAX_WINDOW:
        window = newest_runs_window(
            client, str(parameters["tenant"]), int(parameters["from_ns"]), upper_ns, window_rows
        )
        if not window.candidates:
            return []
        found = client.query(
            queries.RUN_LIST[(True, *filters)],
            parameters={**parameters, "candidates": window.candidates, "floor_ns": window.floor_ns},
        ).named_results()
        page = [dict(row) for row in found]
        if window.complete or len(page) >= limit:
            return page
        window_rows *= WINDOW_GROWTH
    everything = client.query(queries.RUN_LIST[(False, *filters)], parameters=dict(parameters))
    return [dict(row) for row in everything.named_results()]


def run_span_trace(client: Client, tenant: str, run_id: str, span_id: str) -> str | None:
    """The trace of one of the run's own spans, or None when the run has no such span."""
    rows = client.query(
        queries.RUN_SPAN_TRACE, parameters={"tenant": tenant, "run_id": run_id, "span_id": span_id}
    ).result_rows
    return str(rows[0][0]) if rows else None


def run_annotations(client: Client, tenant: str, run_id: str) -> list[dict[str, Any]]:
    return [
        dict(row)
        for row in client.query(
            queries.RUN_ANNOTATIONS, parameters={"tenant": tenant, "run_id": run_id}
        ).named_results()
    ]


def run_span_rows(client: Client, tenant: str, location: RunLocation) -> Iterator[Mapping[str, Any]]:
    """Every span of the run with every column the timeline shows (RUN_SPANS), in time order, one copy each."""
    result = client.query(
        queries.RUN_SPANS,
        parameters={"tenant": tenant, "run_id": location.run_id, "trace_ids": location.summary.trace_ids,
                    "from_ns": location.from_ns, "to_ns": location.to_ns},
    )  # fmt: skip
    yield from first_copies(
        result.named_results(), lambda row: (int(row["start_ns"]), str(row["trace_id"]), str(row["span_id"]))
    )


def run_annotation_rows(
    client: Client, tenant: str, run_id: str, trace_ids: Sequence[str]
) -> Iterator[Mapping[str, Any]]:
    """Annotations of the run's spans (TIMELINE_ANNOTATIONS: selected as the spans are)."""
    result = client.query(
        queries.TIMELINE_ANNOTATIONS, parameters={"tenant": tenant, "run_id": run_id, "trace_ids": list(trace_ids)}
    )
    yield from result.named_results()
