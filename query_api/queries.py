"""Every SQL statement the query API runs, parameterised with clickhouse-connect server-side binding."""

from __future__ import annotations

from typing import Final

from agentledger.ingest.audit_chain import CHAIN_COLUMNS, DIGEST_COLUMNS
from agentledger.schema.span_columns import SPAN_SCHEMA

# Who did what a span records: the agent the collector authenticated (verified_agent_id, stamped from the
# sender's token), or, only when the span was received without authentication, the agent id it claims.
# Fleet metrics and blast radius count by it, so a span claiming another agent's id is credited to its
# sender. Every query attributing activity to an agent uses these fragments.
AGENT_IDENTITY: Final = "if(verified_agent_id != '', toString(verified_agent_id), toString(agent_id))"
# The spans that are the agent's ({agent:String}): verified as the agent, or, unverified, in a run whose
# unverified spans claim it (child spans often carry no gen_ai.agent.id: their run span does).
AGENT_SPANS: Final = """(
    verified_agent_id = {agent:String}
    OR (verified_agent_id = '' AND run_id IN (
        SELECT run_id FROM spans
        WHERE tenant = {tenant:String} AND run_id != '' AND verified_agent_id = ''
        GROUP BY run_id HAVING max(toString(agent_id)) = {agent:String}))
)"""

# The run index row: where (traces, time range) a run's spans are, so the spans read is a key range.
RUN_SUMMARY: Final = """
SELECT
    run_id,
    toUnixTimestamp64Nano(min(first_start)) AS first_start_ns,
    toUnixTimestamp64Nano(max(last_end)) AS last_end_ns,
    groupUniqArrayArray(trace_ids) AS trace_ids,
    max(agent_id) AS agent_id,
    max(agent_name) AS agent_name,
    max(outcome) AS outcome,
    sum(span_count) AS span_count,
    sum(error_count) AS error_count
FROM runs
WHERE tenant = {tenant:String} AND run_id = {run_id:String}
GROUP BY run_id
"""

# Margin around the run's time range: spans of the run's traces that carry no run id (third-party
# child spans) may start a little before or end after the spans that do.
TIME_MARGIN_NS: Final = 3_600 * 1_000_000_000

# Which spans belong to a run: those carrying its id, plus spans of its traces that carry no run of
# their own: an empty run id, or their trace id as run id (what the collector's normaliser gives a
# third-party span that arrived without any span of its run in its batch). All are ranges of the
# (tenant, run_id, trace_id, span_id) key. The one copy of this predicate: the timeline, the audit,
# annotations and verification all use it, so verification covers exactly the spans the timeline shows.
# The same predicate for a set of runs ({run_ids:Array(String)}, their traces in {trace_ids}): the runs
# listing audits a page of runs with one read. Spans adopted this way belong to the run whose trace they
# are in (the store maps them through the run index).


def _run_membership(own_spans: str) -> str:
    return f"""(
    run_id {own_spans}
    OR (run_id IN {{trace_ids:Array(String)}} AND run_id = trace_id)
    OR (run_id = '' AND trace_id IN {{trace_ids:Array(String)}})
  )"""


RUN_MEMBERSHIP: Final = _run_membership("= {run_id:String}")
RUNS_MEMBERSHIP: Final = _run_membership("IN {run_ids:Array(String)}")

# The run's spans, every stored copy: the reader (query_api/store/runs.py, first_copies) orders them by
# (start_time, trace_id, span_id) and keeps the first copy of each span, which hides replayed duplicates
# not yet merged away. Not ORDER BY ... LIMIT 1 BY here: over these wide rows those two steps cost chDB
# ~7 ms for a 32-span run, more than the rest of the statement (benchmarks: query.py). The whole filter is
# PREWHERE: left to itself ClickHouse moves only the tenant and membership conditions there and applies the
# time range after reading every column; so it cost chDB ~1.9 ms more CPU per read at 10M spans (of ~12 ms).
RUN_SPANS: Final = f"""
SELECT
    trace_id, span_id, parent_span_id,
    toUnixTimestamp64Nano(start_time) AS start_ns,
    toUnixTimestamp64Nano(end_time) AS end_ns,
    name, kind, status_code, status_message, service_name, entry_type,
    verified_agent_id, identity_mismatch, truncated,
    agent_id, agent_name, operation, model, input_tokens, output_tokens, context_hash, provenance,
    tool_name, tool_call_id, tool_access, target, arguments_hash,
    approval_decision, approver, policy_id, policy_decision, write_system, write_ref, run_outcome,
    input_value, output_value, system_instructions, input_messages, output_messages,
    tool_arguments, tool_result, retrieval_documents,
    attributes,
    arrayMap(t -> toUnixTimestamp64Nano(t), event_times) AS event_times_ns,
    event_names, event_attributes
FROM spans
PREWHERE tenant = {{tenant:String}}
  AND {RUN_MEMBERSHIP}
  AND start_time >= fromUnixTimestamp64Nano({{from_ns:Int64}})
  AND start_time <= fromUnixTimestamp64Nano({{to_ns:Int64}})
"""


def _digest_expression(name: str) -> str:
    """How a span column is read for its digest: times as integer ns, maps as [key, value] pairs."""
    field_type = SPAN_SCHEMA.field(name).type
    if str(field_type).startswith("timestamp"):
        return f"toUnixTimestamp64Nano({name}) AS {name}"
    if str(field_type) == "list<item: timestamp[ns]>":
        return f"arrayMap(t -> toUnixTimestamp64Nano(t), {name}) AS {name}"
    if str(field_type).startswith("map<"):
        return f"arrayZip(mapKeys({name}), mapValues({name})) AS {name}"
    if str(field_type).startswith("list<item: map<"):
        return f"arrayMap(m -> arrayZip(mapKeys(m), mapValues(m)), {name}) AS {name}"
    return name


# Every stored copy of every span of the run (RUN_MEMBERSHIP, over all time: a span moved out of the
# run's time range is still checked), with its columns as the digests read them. No LIMIT 1 BY: a
# second, different copy of a span is itself a finding.
RUN_SPANS_FOR_DIGEST: Final = """
SELECT {columns}
FROM spans
WHERE tenant = {{tenant:String}} AND {membership}
""".format(
    columns=", ".join(_digest_expression(name) for name in DIGEST_COLUMNS),
    membership=RUN_MEMBERSHIP,
)

# The run's spans as stored under its own run id: what a deletion removes and its tombstone names.
RUN_OWN_SPANS_FOR_DIGEST: Final = """
SELECT {columns}
FROM spans
WHERE tenant = {{tenant:String}} AND run_id = {{run_id:String}}
""".format(columns=", ".join(_digest_expression(name) for name in DIGEST_COLUMNS))

_CHAIN_SELECT: Final = ", ".join(CHAIN_COLUMNS)

# The links that chained the run's spans: its own, and those of the run ids RUN_MEMBERSHIP adopts
# (its trace ids, and the empty run id, whose links are read only where they name one of its traces).
RUN_CHAIN: Final = f"""
SELECT {_CHAIN_SELECT}
FROM audit_chain
WHERE tenant = {{tenant:String}}
  AND (
    run_id = {{run_id:String}}
    OR run_id IN {{trace_ids:Array(String)}}
    OR (run_id = '' AND arrayExists(k -> splitByChar(':', k)[1] IN {{trace_ids:Array(String)}}, span_keys))
  )
ORDER BY format_version, collector_id, log_index, seq
"""

# One collector's whole log in one tenant: the leaves its checkpoints commit to.
LOG_LEAVES: Final = """
SELECT log_index, run_id, seq, kind, link
FROM audit_chain
WHERE tenant = {tenant:String} AND collector_id = {collector_id:String} AND format_version >= 2
ORDER BY log_index
"""

# The (tenant, collector) logs the chain table holds.
TENANT_LOGS: Final = """
SELECT DISTINCT collector_id FROM audit_chain WHERE tenant = {tenant:String} AND format_version >= 2
"""

CHECKPOINTS: Final = """
SELECT tenant, collector_id, size, root, time_ns, format, signature
FROM audit_checkpoints
WHERE tenant = {tenant:String}
ORDER BY collector_id, size, time_ns
"""

# Re-sends of the run's span ids with other content, kept apart by the collector.
RUN_CONFLICTS: Final = f"""
SELECT trace_id, span_id, collector_id, toUnixTimestamp64Nano(received_at) AS received_ns, digest_version,
       chained_digest, received_digest, JSONExtractString(span_json, 'name') AS name
FROM span_conflicts
WHERE tenant = {{tenant:String}} AND {RUN_MEMBERSHIP}
ORDER BY received_at, trace_id, span_id
"""

ACTIVE_HOLDS: Final = """
SELECT hold_id, scope, target, reason, placed_by, toUnixTimestamp64Nano(placed_at) AS placed_ns
FROM legal_holds FINAL
WHERE tenant = {tenant:String} AND released_at IS NULL
ORDER BY placed_at
"""

HOLD_BY_ID: Final = """
SELECT hold_id, scope, target, reason, placed_by, toUnixTimestamp64Nano(placed_at) AS placed_ns,
       released_at IS NOT NULL AS released
FROM legal_holds FINAL
WHERE tenant = {tenant:String} AND hold_id = {hold_id:String}
"""

# Mirrors holds onto stored spans so ClickHouse's TTL skips them (migration 0007).
HOLD_RUN_SPANS: Final = """
ALTER TABLE spans UPDATE legal_hold = 1 WHERE tenant = {tenant:String} AND run_id = {target:String}
"""
HOLD_AGENT_SPANS: Final = """
ALTER TABLE spans UPDATE legal_hold = 1
WHERE tenant = {tenant:String} AND (agent_id = {target:String} OR verified_agent_id = {target:String})
"""
# The same holds mirrored onto the cost baseline's copy of the spans' tokens (migration 0013), whose rows
# carry the spans' retention and TTL, so a held span's tokens stay exactly as long as the span does.
HOLD_RUN_SPAN_TOKENS: Final = HOLD_RUN_SPANS.replace("ALTER TABLE spans ", "ALTER TABLE span_tokens ")
HOLD_AGENT_SPAN_TOKENS: Final = HOLD_AGENT_SPANS.replace("ALTER TABLE spans ", "ALTER TABLE span_tokens ")
# After a release, spans lose their hold unless another active hold still covers them.
RELEASE_SPANS: Final = """
ALTER TABLE spans UPDATE legal_hold = 0
WHERE tenant = {tenant:String} AND legal_hold = 1
  AND run_id NOT IN (SELECT target FROM legal_holds FINAL
                     WHERE tenant = {tenant:String} AND scope = 'run' AND released_at IS NULL)
  AND agent_id NOT IN (SELECT target FROM legal_holds FINAL
                       WHERE tenant = {tenant:String} AND scope = 'agent' AND released_at IS NULL)
  AND verified_agent_id NOT IN (SELECT target FROM legal_holds FINAL
                                WHERE tenant = {tenant:String} AND scope = 'agent' AND released_at IS NULL)
"""

RELEASE_SPAN_TOKENS: Final = RELEASE_SPANS.replace("ALTER TABLE spans ", "ALTER TABLE span_tokens ")

RUN_AGENTS: Final = """
SELECT DISTINCT agent_id, verified_agent_id FROM spans WHERE tenant = {tenant:String} AND run_id = {run_id:String}
"""

DELETE_RUN_SPANS: Final = "ALTER TABLE spans DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}"
DELETE_RUN_INDEX: Final = "ALTER TABLE runs DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}"
# Every row derived from the run's spans, deleted with them (the materialized views of migrations 0001,
# 0003, 0012 and 0013 fill runs, run_facts, refs, run_starts and span_tokens; reviewers' annotations name
# the run's spans and may quote them). Rows of the writes table are other systems' records and stay: so
# do the refs they fill (source 'write'), which hold nothing from the spans.
# tests/query_api/test_deletion.py fails when a table holding run ids is neither listed here nor declared
# as kept there.
DELETE_RUN_DERIVED: Final = (
    DELETE_RUN_INDEX,
    "ALTER TABLE run_facts DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}",
    "ALTER TABLE run_starts DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}",
    "ALTER TABLE span_tokens DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}",
    "ALTER TABLE refs DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String} AND source = 'span'",
    "ALTER TABLE annotations DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}",
)
# The run's spans again, but only what linking and the audit need (the content columns the rules read
# for content flow, no messages or events): the audit endpoint and the runs listing read this version.
# Every stored copy, unordered: the reader orders them and keeps each span's first copy, as for RUN_SPANS.
# PREWHERE as in RUN_SPANS (~0.9 ms less CPU per read at 10M spans).
_FACT_SPANS: Final = """
SELECT
    run_id, trace_id, span_id, parent_span_id,
    toUnixTimestamp64Nano(start_time) AS start_ns,
    toUnixTimestamp64Nano(end_time) AS end_ns,
    name, status_code, entry_type, provenance, tool_name, tool_call_id, tool_access, target,
    toString(agent_id) AS agent_id, input_tokens, output_tokens, arguments_hash,
    approval_decision, approver, policy_id, policy_decision, write_system, write_ref,
    tool_arguments, tool_result, retrieval_documents,
    -- Prompts' inputs and outputs (the bulk of a run's text) are no rule's input: not read.
    if(entry_type = 'prompt', '', input_value) AS input_value,
    if(entry_type = 'prompt', '', output_value) AS output_value,
    mapFilter((key, value) -> key IN {{fact_keys:Array(String)}}, attributes) AS attributes
FROM spans
PREWHERE tenant = {{tenant:String}}
  AND {membership}
  AND start_time >= fromUnixTimestamp64Nano({{from_ns:Int64}})
  AND start_time <= fromUnixTimestamp64Nano({{to_ns:Int64}})
"""
RUN_FACT_SPANS: Final = _FACT_SPANS.format(membership=RUN_MEMBERSHIP)
RUNS_FACT_SPANS: Final = _FACT_SPANS.format(membership=RUNS_MEMBERSHIP)

# Where a set of runs' spans are (the run index rows of RUN_SUMMARY, for many runs at once).
RUNS_LOCATIONS: Final = """
SELECT
    run_id,
    toUnixTimestamp64Nano(min(first_start)) AS first_start_ns,
    toUnixTimestamp64Nano(max(last_end)) AS last_end_ns,
    groupUniqArrayArray(trace_ids) AS trace_ids,
    max(agent_id) AS agent_id
FROM runs
WHERE tenant = {tenant:String} AND run_id IN {run_ids:Array(String)}
GROUP BY run_id
"""

# The columns of a downstream write as the audit and the timeline read them (one run or many).
_WRITE_ROW: Final = """
        run_id, system, ref, action, target,
        toUnixTimestamp64Nano(occurred_at) AS occurred_ns,
        tool_call_id, source, title, url, actor
"""

# The writes of a set of runs (RUN_WRITES for many runs).
RUNS_WRITES: Final = """
SELECT""" + _WRITE_ROW + """, toUnixTimestamp64Nano(received_at) AS received_ns
FROM writes
WHERE tenant = {tenant:String} AND run_id IN {run_ids:Array(String)}
"""

# The newest rows of the time-ordered run index (migration 0012) that started in [from, to]: the window
# of candidate runs the listing and the cost baseline recompute exactly (query_api/store/runs.py). Each row
# carries the agent of the spans it was made from: the baseline picks the agents' latest runs from these
# rows alone (agents_recent_runs), with no read of the runs table.
RUN_STARTS_WINDOW: Final = """
SELECT run_id, toUnixTimestamp64Nano(first_start) AS start_ns, agent_id
FROM run_starts
WHERE tenant = {tenant:String}
  AND first_start >= fromUnixTimestamp64Nano({from_ns:Int64})
  AND first_start <= fromUnixTimestamp64Nano({to_ns:Int64})
ORDER BY first_start DESC
LIMIT {scan:UInt32}
"""

# The tokens of each of these runs' spans, as migration 0013 copies them (one row per stored copy of a
# span with tokens). The reader (load_token_baselines) counts one copy of each span and sums per run (a run
# with no model call has no row): a LIMIT 1 BY subquery and GROUP BY here cost chDB more than the rows.
RUNS_TOKENS: Final = """
SELECT run_id, trace_id, span_id, input_tokens + output_tokens AS tokens
FROM span_tokens
WHERE tenant = {tenant:String} AND run_id IN {run_ids:Array(String)}
"""

# A tenant's tool catalogue as last set through the admin API (migration 0009); newest version wins.
TOOL_CATALOGUE: Final = """
SELECT catalogue, updated_by, toUnixTimestamp64Nano(updated_at) AS updated_ns
FROM tool_catalogues
WHERE tenant = {tenant:String}
ORDER BY updated_at DESC
LIMIT 1
"""

# A run's downstream writes: one key range of writes. A redelivered webhook repeats a row until merges
# collapse it: the reader (query_api/writes.py, distinct_writes) keeps the newest per (system, ref,
# occurred_at) and orders them, rather than ORDER BY ... LIMIT 1 BY here, whose steps cost chDB more
# than the few rows they order (benchmarks: query.py).
RUN_WRITES: Final = """
SELECT""" + _WRITE_ROW + """, toUnixTimestamp64Nano(received_at) AS received_ns
FROM writes
WHERE tenant = {tenant:String} AND run_id = {run_id:String}
"""

# Reverse lookup: which runs wrote (or logged a write span for) this reference. One key range of refs.
RUNS_BY_WRITE_REF: Final = """
SELECT run_id, max(toUnixTimestamp64Nano(at)) AS last_ns
FROM refs
WHERE tenant = {tenant:String} AND kind = 'write_ref' AND value = {ref:String}
GROUP BY run_id
ORDER BY last_ns DESC, run_id
LIMIT {limit:UInt32}
"""

# The whole reverse lookup in one statement, each table read once: the ref's runs (RUNS_BY_WRITE_REF), the
# run index rows of those the index knows (RUNS_LOCATIONS), their writes of the ref, and the spans of the
# located runs (RUNS_MEMBERSHIP, within the runs' overall time range) with only what linking a write to
# its tool call reads, so no big ZSTD content column is decompressed. A statement's planning costs a few
# milliseconds that grow with its steps (subqueries, sorts, LIMIT BY over wide rows) and with its expressions,
# so the runs and their index rows are scalars read once, the rows come back unsorted with every stored copy
# (the store keeps the newest copy of each write, a redelivered webhook, and the earliest of each span, a
# replay, and orders them: query_api/store/runs.py), and each part packs its values into one array of texts
# and one of integers (REF_LOOKUP_TEXTS, REF_LOOKUP_NUMBERS) rather than padding the other parts' columns
# with empty values: the padded form had ~100 expressions and cost chDB ~15% more CPU (benchmarks: query.py).
# Three parts told apart by `part`.
_NO_ATTRIBUTES: Final = "CAST(map(), 'Map(LowCardinality(String), String)')"
_NO_TRACES: Final = "CAST([], 'Array(String)')"
_LOCATED_MEMBERSHIP: Final = _run_membership("IN located.1").replace("{trace_ids:Array(String)}", "located.6")
# The names of each part's `texts` and `numbers`, in order: the store reads them back by these names.
REF_LOOKUP_TEXTS: Final = {
    "write": ("system", "ref", "action", "target", "tool_call_id", "source", "title", "url", "actor"),
    "location": ("agent_id",),
    "span": ("trace_id", "span_id", "parent_span_id", "name", "status_code", "entry_type", "provenance", "tool_name",
             "tool_call_id", "tool_access", "target", "approval_decision", "policy_decision", "write_system",
             "write_ref"),
}  # fmt: skip
REF_LOOKUP_NUMBERS: Final = {
    "write": ("occurred_ns", "received_ns"),
    "location": ("first_start_ns", "last_end_ns"),
    "span": ("start_ns", "end_ns"),
}
REF_LOOKUP: Final = f"""
WITH
    -- Scalars are read as tuples: a tuple's element is a constant the key analysis uses, a bare array not.
    (SELECT tuple(groupArray(run_id)) FROM ({RUNS_BY_WRITE_REF})) AS ref_runs,
    (
        SELECT (groupArray(run_id), groupArray(first_start_ns), groupArray(last_end_ns), groupArray(trace_ids),
                groupArray(agent_id), arrayDistinct(arrayFlatten(groupArray(trace_ids))), min(first_start_ns),
                max(last_end_ns))
        FROM ({RUNS_LOCATIONS.replace("{run_ids:Array(String)}", "ref_runs.1")})
    ) AS located
SELECT
    'write' AS part, run_id,
    [toString(system), ref, toString(action), target, tool_call_id, toString(source), title, url, actor] AS texts,
    [toUnixTimestamp64Nano(occurred_at), toUnixTimestamp64Nano(received_at)] AS numbers,
    {_NO_TRACES} AS trace_ids, {_NO_ATTRIBUTES} AS attributes
FROM writes
WHERE tenant = {{tenant:String}} AND run_id IN ref_runs.1 AND ref = {{ref:String}}
UNION ALL
SELECT
    'location' AS part, location.1 AS run_id, [location.5] AS texts, [location.2, location.3] AS numbers,
    location.4 AS trace_ids, {_NO_ATTRIBUTES} AS attributes
FROM (SELECT arrayJoin(arrayZip(located.1, located.2, located.3, located.4, located.5)) AS location)
UNION ALL
SELECT
    'span' AS part, run_id,
    [trace_id, span_id, parent_span_id, toString(name), toString(status_code), toString(entry_type),
     toString(provenance), toString(tool_name), tool_call_id, toString(tool_access), target,
     toString(approval_decision), toString(policy_decision), toString(write_system), write_ref] AS texts,
    [toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time)] AS numbers,
    {_NO_TRACES} AS trace_ids,
    mapFilter((key, value) -> key IN {{fact_keys:Array(String)}}, attributes) AS attributes
FROM spans
WHERE tenant = {{tenant:String}}
  AND {_LOCATED_MEMBERSHIP}
  AND start_time >= fromUnixTimestamp64Nano(located.7 - {{margin_ns:Int64}})
  AND start_time <= fromUnixTimestamp64Nano(located.8 + {{margin_ns:Int64}})
  AND notEmpty(located.1)
"""

# Every span or write that names a target (customer, record, repository). One key range of refs.
TARGET_TOUCHES: Final = """
SELECT run_id, source, trace_id, span_id, name, tool_call_id, write_ref, toUnixTimestamp64Nano(at) AS at_ns
FROM refs
WHERE tenant = {tenant:String} AND kind = 'target' AND value = {target:String}
ORDER BY at_ns DESC, run_id, span_id, write_ref
LIMIT 1 BY run_id, source, trace_id, span_id, write_ref
LIMIT {limit:UInt32}
"""

# The runs listing: the run index and run facts of one tenant, filtered, newest first; the cursor is the
# (first_start, run_id) of the last row of the previous page. Windowed, it reads the candidate runs of a
# window of the time-ordered index (key lookups), of which only those that started after {floor_ns} are
# known to be complete (RUN_STARTS_WINDOW); else it groups the tenant's whole index, for a filter so
# selective that the windows grew past a bound.
_RUN_LIST: Final = """
SELECT
    r.run_id AS run_id, r.first_start_ns AS first_start_ns, r.last_end_ns AS last_end_ns,
    r.agent_id AS agent_id, r.agent_name AS agent_name, r.outcome AS outcome,
    r.span_count AS span_count, r.error_count AS error_count, r.write_tool_calls AS write_tool_calls,
    r.trace_ids AS trace_ids, f.tools AS tools, f.autonomy_level AS autonomy_level
FROM (
    SELECT
        run_id,
        toUnixTimestamp64Nano(min(first_start)) AS first_start_ns,
        toUnixTimestamp64Nano(max(last_end)) AS last_end_ns,
        max(agent_id) AS agent_id, max(agent_name) AS agent_name, max(outcome) AS outcome,
        sum(span_count) AS span_count, sum(error_count) AS error_count, sum(write_tool_calls) AS write_tool_calls,
        groupUniqArrayArray(trace_ids) AS trace_ids
    FROM runs
    WHERE tenant = {{tenant:String}}{candidates}
    GROUP BY run_id
) AS r
LEFT JOIN (
    SELECT run_id, groupUniqArrayArray(tools) AS tools, max(autonomy_level) AS autonomy_level
    FROM run_facts
    WHERE tenant = {{tenant:String}}{candidates}
    GROUP BY run_id
) AS f ON f.run_id = r.run_id
WHERE ({{agent:String}} = '' OR r.agent_id = {{agent:String}} OR r.agent_name = {{agent:String}})
  AND ({{outcome:String}} = '' OR r.outcome = {{outcome:String}})
  AND ({{autonomy_level:String}} = '' OR f.autonomy_level = {{autonomy_level:String}})
  AND ({{tool:String}} = '' OR has(f.tools, {{tool:String}}))
{workflow}{target}  AND r.first_start_ns >= {{from_ns:Int64}} AND r.first_start_ns <= {{to_ns:Int64}}{floor}
  AND (r.first_start_ns < {{cursor_ns:Int64}}
       OR (r.first_start_ns = {{cursor_ns:Int64}} AND r.run_id < {{cursor_run:String}}))
ORDER BY r.first_start_ns DESC, r.run_id DESC
LIMIT {{limit:UInt32}}
"""
# The workflow and target filters are subqueries that ClickHouse evaluates even when their parameter is
# empty (a scan of spans' attributes per request), so each is part of the statement only when asked for.
_RUN_LIST_WORKFLOW: Final = """  AND r.run_id IN (
      SELECT run_id FROM spans
      WHERE tenant = {{tenant:String}} AND entry_type = 'run'{candidates}
        AND attributes['gen_ai.workflow.name'] = {{workflow:String}})
"""
_RUN_LIST_TARGET: Final = """  AND r.run_id IN (
      SELECT run_id FROM refs
      WHERE tenant = {{tenant:String}} AND kind = 'target' AND value = {{target:String}})
"""


def _run_list(windowed: bool, workflow: bool, target: bool) -> str:
    candidates = " AND run_id IN {candidates:Array(String)}" if windowed else ""
    return _RUN_LIST.format(
        candidates=candidates,
        floor=" AND r.first_start_ns > {floor_ns:Int64}" if windowed else "",
        workflow=_RUN_LIST_WORKFLOW.format(candidates=candidates) if workflow else "",
        target=_RUN_LIST_TARGET.format() if target else "",
    )


# By (windowed, workflow filter, target filter).
RUN_LIST: Final = {
    (windowed, workflow, target): _run_list(windowed, workflow, target)
    for windowed in (True, False)
    for workflow in (True, False)
    for target in (True, False)
}

# Per listed run: workflow, tokens and cost (prices as parallel arrays, as the metrics queries take them),
# and its downstream writes, in one statement of two parts told apart by `part`: the 'usage' row of each run
# with spans, and a 'write' row per stored copy of each of the runs' writes, which the store counts as the
# timeline shows them (one per system, ref and time; list_usage). One statement, not two, and the writes'
# DISTINCT and GROUP BY done on these few rows in Python: a round trip and two plan steps fewer per page.
RUN_LIST_USAGE: Final = """
SELECT
    'usage' AS part,
    run_id,
    maxIf(attributes['gen_ai.workflow.name'], entry_type = 'run') AS workflow,
    sum(input_tokens) AS used_input_tokens,
    sum(output_tokens) AS used_output_tokens,
    sum(
        input_tokens * transform(model, {price_models:Array(String)}, {price_in:Array(Float64)}, toFloat64(0))
        + output_tokens * transform(model, {price_models:Array(String)}, {price_out:Array(Float64)}, toFloat64(0))
    ) / 1e6 + sum(toFloat64OrZero(attributes['agentledger.tool.cost'])) AS cost,
    '' AS system, '' AS ref, toInt64(0) AS occurred_ns
FROM (
    SELECT run_id, entry_type, toString(model) AS model, input_tokens, output_tokens, attributes
    FROM spans
    WHERE tenant = {tenant:String} AND run_id IN {run_ids:Array(String)}
    LIMIT 1 BY run_id, trace_id, span_id
)
GROUP BY run_id
UNION ALL
SELECT 'write' AS part, run_id, '' AS workflow, toInt64(0) AS used_input_tokens, toInt64(0) AS used_output_tokens,
       toFloat64(0) AS cost, toString(system) AS system, ref, toUnixTimestamp64Nano(occurred_at) AS occurred_ns
FROM writes
WHERE tenant = {tenant:String} AND run_id IN {run_ids:Array(String)}
"""

# Whether a span belongs to the run (annotations may only name the run's own spans).
RUN_SPAN_TRACE: Final = """
SELECT trace_id FROM spans
WHERE tenant = {tenant:String} AND run_id = {run_id:String} AND span_id = {span_id:String}
LIMIT 1
"""

# A run's annotations, newest version of each.
RUN_ANNOTATIONS: Final = """
SELECT annotation_id, span_id, trace_id, name, label, score, explanation, annotator,
       toUnixTimestamp64Nano(created_at) AS created_ns
FROM annotations
WHERE tenant = {tenant:String} AND run_id = {run_id:String}
ORDER BY updated_at DESC
LIMIT 1 BY trace_id, span_id, annotation_id
"""


# --- Phoenix annotation sync and timeline annotations (query_api/phoenix_sync.py, timeline.py) --------------

# Spans of the sync window, whose Phoenix annotations are looked up; each with the run id it is stored under.
PHOENIX_SYNC_SPANS: Final = """
SELECT span_id, any(run_id) AS run_id, any(trace_id) AS trace_id
FROM spans
WHERE tenant = {tenant:String} AND start_time >= fromUnixTimestamp64Nano({from_ns:Int64})
GROUP BY span_id
"""

# Versions already stored, so a sync inserts only new or changed annotations (re-running adds nothing).
PHOENIX_KNOWN_ANNOTATIONS: Final = """
SELECT annotation_id, toUnixTimestamp64Micro(max(updated_at)) AS updated_us
FROM annotations
WHERE tenant = {tenant:String} AND annotation_id IN {ids:Array(String)}
GROUP BY annotation_id
"""

# Runs with spans in the sync window: their verification is pushed to Phoenix.
PHOENIX_SYNC_RUNS: Final = """
SELECT run_id
FROM runs
WHERE tenant = {tenant:String}
GROUP BY run_id
HAVING max(last_end) >= fromUnixTimestamp64Nano({from_ns:Int64})
ORDER BY run_id
"""

# The span a run-level annotation goes on: the run span, else the run's first span.
PHOENIX_RUN_ANCHOR_SPAN: Final = """
SELECT trace_id, span_id
FROM spans
WHERE tenant = {tenant:String} AND run_id = {run_id:String}
ORDER BY entry_type = 'run' DESC, start_time, span_id
LIMIT 1
"""

# Annotations of the run's spans, selected as RUN_SPANS selects the spans; FINAL keeps each one's newest version.
TIMELINE_ANNOTATIONS: Final = f"""
SELECT
    span_id, name, label, score, explanation, annotator_kind, annotator, source,
    toUnixTimestamp64Nano(created_at) AS created_ns,
    toUnixTimestamp64Nano(updated_at) AS updated_ns
FROM annotations FINAL
WHERE tenant = {{tenant:String}}
  AND {RUN_MEMBERSHIP}
ORDER BY created_at, annotation_id
"""


# ---------------------------------------------------------------------------------------------------
# Fleet metrics, blast radius and eval comparison (issue 8). Everything is aggregated in ClickHouse;
# Python only reshapes the per-group rows. The per-run facts below are one text shared by several
# statements: they are composed here from constants, never from request input.
# ---------------------------------------------------------------------------------------------------

# Annotation names that change what the metrics report: a reviewer's `outcome` annotation (label =
# success | failure | escalated | cancelled) overrides the outcome the agent reported; a `correction`
# annotation on a run marks its writes as corrected at the annotation's time.
OUTCOME_ANNOTATION: Final = "outcome"
CORRECTION_ANNOTATION: Final = "correction"

# Runs whose run span started in [from, to).
_RUNS_IN_WINDOW: Final = """
    SELECT DISTINCT run_id FROM spans
    WHERE tenant = {tenant:String} AND entry_type = 'run' AND run_id != ''
      AND start_time >= fromUnixTimestamp64Nano({from_ns:Int64})
      AND start_time < fromUnixTimestamp64Nano({to_ns:Int64})
"""

# Runs of one eval suite, for the baseline and the candidate version.
_RUNS_OF_EVAL: Final = """
    SELECT DISTINCT run_id FROM spans
    WHERE tenant = {tenant:String} AND entry_type = 'run' AND run_id != ''
      AND attributes['agentledger.eval.suite'] = {suite:String}
      AND attributes['agentledger.eval.version'] IN ({baseline:String}, {candidate:String})
"""

# One row per run: who ran it, how it ended, what it cost, how long it took. A run paused for approval
# and resumed has a run span per trace: it ends as its last run span with an outcome says.
#  - outcome: a reviewer's `outcome` annotation (newest) wins over the run span's reported outcome;
#  - cost (US dollars): model tokens at the configured prices + `agentledger.tool.cost` of any span +
#    human review time (approval spans a person decided: approved or rejected; auto-approvals and
#    timeouts had nobody reviewing) at the configured hourly rate;
#  - latency: from the first run span's start to the last run span's end (waiting for a human included);
#  - violations: policy decisions other than allow (block, review, escalate, defer).
# LIMIT 1 BY hides spool-replayed copies not yet merged away.
_RUN_FACTS: Final = """
WITH
selected_runs AS ({selection}),
run_spans AS (
    SELECT run_id, trace_id, span_id, entry_type, {agent_identity} AS agent_id, toString(model) AS model,
           input_tokens, output_tokens, duration_ns, toString(run_outcome) AS run_outcome,
           toUnixTimestamp64Nano(start_time) AS start_ns, toUnixTimestamp64Nano(end_time) AS end_ns,
           toString(approval_decision) AS approval_decision, toString(policy_id) AS policy_id,
           toString(policy_decision) AS policy_decision, attributes
    FROM spans
    WHERE tenant = {{tenant:String}} AND run_id IN (SELECT run_id FROM selected_runs)
    LIMIT 1 BY run_id, trace_id, span_id
),
run_facts AS (
    SELECT
        run_id,
        max(agent_id) AS agent,
        maxIf(attributes['gen_ai.workflow.name'], entry_type = 'run') AS workflow,
        argMaxIf(run_outcome, end_ns, entry_type = 'run' AND run_outcome != '') AS reported_outcome,
        argMaxIf(attributes['agentledger.run.outcome_reason'], end_ns, entry_type = 'run' AND run_outcome != '')
            AS outcome_reason,
        minIf(policy_id, policy_decision IN ('review', 'escalate') AND policy_id != '') AS escalating_policy,
        maxIf(attributes['agentledger.eval.case'], entry_type = 'run') AS eval_case,
        maxIf(attributes['agentledger.eval.version'], entry_type = 'run') AS eval_version,
        maxIf(end_ns, entry_type = 'run') - minIf(start_ns, entry_type = 'run') AS latency_ns,
        minIf(start_ns, entry_type = 'run') AS started_ns,
        sum(
            input_tokens * transform(model, {{price_models:Array(String)}}, {{price_in:Array(Float64)}}, toFloat64(0))
            + output_tokens
              * transform(model, {{price_models:Array(String)}}, {{price_out:Array(Float64)}}, toFloat64(0))
        ) / 1e6 AS model_cost,
        groupUniqArrayIf(model, model != '' AND NOT has({{price_models:Array(String)}}, model)) AS unpriced_models,
        sum(toFloat64OrZero(attributes['agentledger.tool.cost'])) AS tool_cost,
        sumIf(duration_ns, entry_type = 'approval' AND approval_decision IN ('approved', 'rejected')) AS review_ns,
        countIf(entry_type = 'policy_decision' AND policy_decision NOT IN ('', 'allow')) AS violations
    FROM run_spans
    GROUP BY run_id
),
outcome_annotations AS (
    SELECT run_id, argMax(label, updated_at) AS label
    FROM annotations
    WHERE tenant = {{tenant:String}} AND name = {{outcome_annotation:String}}
      AND run_id IN (SELECT run_id FROM selected_runs)
    GROUP BY run_id
),
scored_runs AS (
    SELECT
        f.*,
        if(a.label != '', a.label, f.reported_outcome) AS outcome,
        f.review_ns / 3.6e12 * {{review_cost_per_hour:Float64}} AS review_cost,
        f.model_cost + f.tool_cost + review_cost AS cost,
        multiIf({{group_by:String}} = 'agent', f.agent, {{group_by:String}} = 'workflow', f.workflow,
                {{group_by:String}} = 'version', f.eval_version, '') AS group_key
    FROM run_facts AS f
    LEFT JOIN outcome_annotations AS a ON a.run_id = f.run_id
    WHERE ({{agent:String}} = '' OR f.agent = {{agent:String}})
      AND ({{workflow:String}} = '' OR f.workflow = {{workflow:String}})
)
"""

_WINDOW_RUN_FACTS: Final = _RUN_FACTS.format(selection=_RUNS_IN_WINDOW, agent_identity=AGENT_IDENTITY)
_EVAL_RUN_FACTS: Final = _RUN_FACTS.format(selection=_RUNS_OF_EVAL, agent_identity=AGENT_IDENTITY)

# Cost per successful outcome divides the cost of every run (failures cost money too) by the successes.
# Latency quantiles are exact nearest-rank values (quantileExact: the value at 0-based position
# floor(q * n) of the sorted run durations).
_RUN_TOTALS: Final = """
SELECT
    group_key,
    count() AS runs,
    countIf(outcome = 'success') AS successes,
    countIf(outcome = 'escalated') AS escalations,
    uniqExactIf(eval_case, eval_case != '') AS cases,
    sum(model_cost) AS model_cost,
    sum(tool_cost) AS tool_cost,
    sum(review_ns) AS review_ns,
    sum(review_cost) AS review_cost,
    sum(cost) AS total_cost,
    toInt64(quantileExact(0.5)(latency_ns)) AS latency_p50_ns,
    toInt64(quantileExact(0.95)(latency_ns)) AS latency_p95_ns,
    sum(violations) AS violations,
    arraySort(groupUniqArrayArray(unpriced_models)) AS unpriced_models
FROM scored_runs
GROUP BY group_key
ORDER BY group_key
"""

METRICS_TOTALS: Final = _WINDOW_RUN_FACTS + _RUN_TOTALS
EVAL_TOTALS: Final = _EVAL_RUN_FACTS + _RUN_TOTALS

# Why runs were escalated: the reason the run span gives, else the policy that asked for review or
# escalation, else 'unspecified'.
_METRICS_ESCALATION_REASONS_TAIL: Final = """
SELECT
    group_key,
    multiIf(outcome_reason != '', outcome_reason, escalating_policy != '', escalating_policy, 'unspecified') AS reason,
    count() AS runs
FROM scored_runs
WHERE outcome = 'escalated'
GROUP BY group_key, reason
ORDER BY group_key, runs DESC, reason
"""
METRICS_ESCALATION_REASONS: Final = _WINDOW_RUN_FACTS + _METRICS_ESCALATION_REASONS_TAIL

_VIOLATIONS_BY_RULE: Final = """
SELECT
    r.group_key AS group_key,
    s.policy_id AS policy_id,
    s.attributes['agentledger.policy.rule.id'] AS rule_id,
    s.policy_decision AS decision,
    count() AS violations
FROM run_spans AS s
INNER JOIN scored_runs AS r ON r.run_id = s.run_id
WHERE s.entry_type = 'policy_decision' AND s.policy_decision NOT IN ('', 'allow')
GROUP BY group_key, policy_id, rule_id, decision
ORDER BY group_key, violations DESC, policy_id, rule_id, decision
"""

METRICS_VIOLATIONS: Final = _WINDOW_RUN_FACTS + _VIOLATIONS_BY_RULE

# The window's newest runs (at most {audit_max_runs}) and their group: the audit's findings are counted
# per group and rule over them.
METRICS_RUN_GROUPS: Final = _WINDOW_RUN_FACTS + """
SELECT run_id, group_key FROM scored_runs ORDER BY started_ns DESC, run_id DESC LIMIT {audit_max_runs:UInt32}
"""

# Time to correct: for each downstream write of a run in the window, the time until the first later
# write to the same system and target by anyone other than that run (a person, another run), or the
# first `correction` annotation on the run made after the write, whichever came first. Writes never
# corrected count in `writes` only.
_METRICS_TIME_TO_CORRECT_TAIL: Final = """,
agent_writes AS (
    SELECT w.run_id AS run_id, w.system AS system, w.target AS target, w.ref AS ref,
           toUnixTimestamp64Nano(w.occurred_at) AS at_ns, r.group_key AS group_key
    FROM writes AS w
    INNER JOIN scored_runs AS r ON r.run_id = w.run_id
    WHERE w.tenant = {tenant:String}
    LIMIT 1 BY run_id, system, ref, at_ns
),
write_corrections AS (
    SELECT a.run_id AS run_id, a.system AS system, a.ref AS ref, a.at_ns AS at_ns,
           min(toUnixTimestamp64Nano(l.occurred_at)) AS corrected_ns
    FROM agent_writes AS a
    INNER JOIN (SELECT run_id, system, target, occurred_at FROM writes
                WHERE tenant = {tenant:String} AND target != '') AS l
        ON l.system = a.system AND l.target = a.target
    WHERE toUnixTimestamp64Nano(l.occurred_at) > a.at_ns AND l.run_id != a.run_id
    GROUP BY run_id, system, ref, at_ns
),
annotation_corrections AS (
    SELECT a.run_id AS run_id, a.system AS system, a.ref AS ref, a.at_ns AS at_ns,
           min(toUnixTimestamp64Nano(n.created_at)) AS corrected_ns
    FROM agent_writes AS a
    INNER JOIN (SELECT run_id, created_at FROM annotations
                WHERE tenant = {tenant:String} AND name = {correction_annotation:String}) AS n
        ON n.run_id = a.run_id
    WHERE toUnixTimestamp64Nano(n.created_at) > a.at_ns
    GROUP BY run_id, system, ref, at_ns
),
corrected AS (
    SELECT a.group_key AS group_key,
           multiIf(w.corrected_ns > 0 AND (n.corrected_ns = 0 OR w.corrected_ns <= n.corrected_ns), w.corrected_ns,
                   n.corrected_ns > 0, n.corrected_ns, 0) - a.at_ns AS correct_ns,
           w.corrected_ns > 0 OR n.corrected_ns > 0 AS was_corrected
    FROM agent_writes AS a
    LEFT JOIN write_corrections AS w
        ON w.run_id = a.run_id AND w.system = a.system AND w.ref = a.ref AND w.at_ns = a.at_ns
    LEFT JOIN annotation_corrections AS n
        ON n.run_id = a.run_id AND n.system = a.system AND n.ref = a.ref AND n.at_ns = a.at_ns
)
SELECT
    group_key,
    count() AS writes,
    countIf(was_corrected) AS corrected,
    toInt64(quantileExactIf(0.5)(correct_ns, was_corrected)) AS p50_ns,
    toInt64(if(countIf(was_corrected) = 0, 0, maxIf(correct_ns, was_corrected))) AS max_ns,
    if(countIf(was_corrected) = 0, 0, avgIf(correct_ns, was_corrected)) AS mean_ns
FROM corrected
GROUP BY group_key
ORDER BY group_key
"""
METRICS_TIME_TO_CORRECT: Final = _WINDOW_RUN_FACTS + _METRICS_TIME_TO_CORRECT_TAIL

# Eval gate: candidate violations (by case, policy and rule) the baseline did not have on that case.
_EVAL_NEW_VIOLATIONS_TAIL: Final = """
SELECT count() AS new_violations
FROM run_spans AS s
INNER JOIN scored_runs AS r ON r.run_id = s.run_id
WHERE s.entry_type = 'policy_decision' AND s.policy_decision NOT IN ('', 'allow')
  AND r.eval_version = {candidate:String}
  AND (r.eval_case, s.policy_id, s.attributes['agentledger.policy.rule.id']) NOT IN (
      SELECT r2.eval_case, s2.policy_id, s2.attributes['agentledger.policy.rule.id']
      FROM run_spans AS s2
      INNER JOIN scored_runs AS r2 ON r2.run_id = s2.run_id
      WHERE s2.entry_type = 'policy_decision' AND s2.policy_decision NOT IN ('', 'allow')
        AND r2.eval_version = {baseline:String}
  )
"""
EVAL_NEW_VIOLATIONS: Final = _EVAL_RUN_FACTS + _EVAL_NEW_VIOLATIONS_TAIL

# Blast radius. The agent's write tool calls are its spans (AGENT_SPANS); its downstream writes are those
# reported for the runs it has spans in. Windows are
# [from + k * window, from + (k + 1) * window), so they line up with the period asked for. The worst
# window has the most write tool calls, then the most money moved, then the most targets; the earliest
# wins a tie.
_AGENT_RUNS: Final = f"""
agent_runs AS (
    SELECT DISTINCT run_id FROM spans
    WHERE tenant = {{tenant:String}} AND run_id != '' AND {AGENT_SPANS}
)
"""

BLAST_RADIUS_WORST_WINDOW: Final = f"""
WITH write_calls AS (
    SELECT trace_id, span_id, target,
           intDiv(toUnixTimestamp64Nano(start_time) - {{from_ns:Int64}}, {{window_ns:Int64}}) AS bucket,
           toFloat64OrZero(attributes[{{amount_attribute:String}}]) AS amount
    FROM spans
    WHERE tenant = {{tenant:String}} AND run_id != '' AND {AGENT_SPANS}
      AND entry_type = 'tool_call' AND tool_access = 'write'
      AND start_time >= fromUnixTimestamp64Nano({{from_ns:Int64}})
      AND start_time < fromUnixTimestamp64Nano({{to_ns:Int64}})
    LIMIT 1 BY trace_id, span_id
)
SELECT
    bucket,
    count() AS write_tool_calls,
    uniqExactIf(target, target != '') AS distinct_targets,
    sum(amount) AS money_moved
FROM write_calls
GROUP BY bucket
ORDER BY write_tool_calls DESC, money_moved DESC, distinct_targets DESC, bucket ASC
LIMIT 1
"""
_BLAST_RADIUS_WRITES_BY_SYSTEM_TAIL: Final = """
SELECT system, count() AS writes
FROM (
    SELECT run_id, toString(system) AS system, ref, occurred_at FROM writes
    WHERE tenant = {tenant:String} AND run_id IN (SELECT run_id FROM agent_runs)
      AND occurred_at >= fromUnixTimestamp64Nano({start_ns:Int64})
      AND occurred_at < fromUnixTimestamp64Nano({end_ns:Int64})
    LIMIT 1 BY run_id, system, ref, occurred_at
)
GROUP BY system
ORDER BY system
"""
BLAST_RADIUS_WRITES_BY_SYSTEM: Final = "WITH" + _AGENT_RUNS + _BLAST_RADIUS_WRITES_BY_SYSTEM_TAIL
