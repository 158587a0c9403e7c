"""Every SQL statement the query API runs, parameterised with clickhouse-connect server-side binding."""

from __future__ import annotations

from typing import Final

from agentledger.ingest.audit_chain import DIGEST_FIELDS
from agentledger.schema.span_columns import SPAN_SCHEMA

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

# The run's spans: those carrying its id, plus spans of its traces that carry no run of their own: an
# empty run id, or their trace id as run id (what the collector's normaliser gives a third-party span
# that arrived without any span of its run in its batch). All are ranges of the
# (tenant, run_id, trace_id, span_id) key; LIMIT 1 BY hides replayed duplicates not yet merged away.
RUN_SPANS: Final = """
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
WHERE tenant = {tenant:String}
  AND (
    run_id = {run_id:String}
    OR (run_id IN {trace_ids:Array(String)} AND run_id = trace_id)
    OR (run_id = '' AND trace_id IN {trace_ids:Array(String)})
  )
  AND start_time >= fromUnixTimestamp64Nano({from_ns:Int64})
  AND start_time <= fromUnixTimestamp64Nano({to_ns:Int64})
ORDER BY start_time, trace_id, span_id
LIMIT 1 BY trace_id, span_id
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


# Every stored copy of every span of the run, with its columns as the digest reads them. No LIMIT 1 BY:
# a second, different copy of a span is itself a finding.
RUN_SPANS_FOR_DIGEST: Final = f"""
SELECT {", ".join(_digest_expression(name) for name in DIGEST_FIELDS)}
FROM spans
WHERE tenant = {{tenant:String}} AND run_id = {{run_id:String}}
"""

RUN_CHAIN: Final = """
SELECT seq, kind, batch_time_ns, span_keys, span_digests, span_retain_until, note, prev_link, link, signature
FROM audit_chain
WHERE tenant = {tenant:String} AND run_id = {run_id:String}
ORDER BY seq
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

RUN_AGENTS: Final = """
SELECT DISTINCT agent_id, verified_agent_id FROM spans WHERE tenant = {tenant:String} AND run_id = {run_id:String}
"""

DELETE_RUN_SPANS: Final = "ALTER TABLE spans DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}"
DELETE_RUN_INDEX: Final = "ALTER TABLE runs DELETE WHERE tenant = {tenant:String} AND run_id = {run_id:String}"
# The run's spans again, but only what linking and the audit need (no content columns): reverse
# lookups and the audit endpoint read this lighter version of the same key ranges.
RUN_FACT_SPANS: Final = """
SELECT
    trace_id, span_id, parent_span_id,
    toUnixTimestamp64Nano(start_time) AS start_ns,
    toUnixTimestamp64Nano(end_time) AS end_ns,
    name, status_code, entry_type, provenance, tool_name, tool_call_id, tool_access, target,
    approval_decision, approver, policy_decision, write_system, write_ref,
    mapFilter((key, value) -> key IN {fact_keys:Array(String)}, attributes) AS attributes
FROM spans
WHERE tenant = {tenant:String}
  AND (run_id = {run_id:String} OR (run_id = '' AND trace_id IN {trace_ids:Array(String)}))
  AND start_time >= fromUnixTimestamp64Nano({from_ns:Int64})
  AND start_time <= fromUnixTimestamp64Nano({to_ns:Int64})
ORDER BY start_time, trace_id, span_id
LIMIT 1 BY trace_id, span_id
"""

# A run's downstream writes: one key range of writes. A redelivered webhook repeats a row until
# merges collapse it, so keep the newest per (system, ref, occurred_at).
RUN_WRITES: Final = """
SELECT * FROM (
    SELECT
        run_id, system, ref, action, target,
        toUnixTimestamp64Nano(occurred_at) AS occurred_ns,
        tool_call_id, source, title, url, actor
    FROM writes
    WHERE tenant = {tenant:String} AND run_id = {run_id:String}
    ORDER BY received_at DESC
    LIMIT 1 BY system, ref, occurred_at
)
ORDER BY occurred_ns, system, ref
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

# Every span or write that names a target (customer, record, repository). One key range of refs.
TARGET_TOUCHES: Final = """
SELECT run_id, source, trace_id, span_id, name, tool_call_id, write_ref, toUnixTimestamp64Nano(at) AS at_ns
FROM refs
WHERE tenant = {tenant:String} AND kind = 'target' AND value = {target:String}
ORDER BY at_ns DESC, run_id, span_id, write_ref
LIMIT 1 BY run_id, source, trace_id, span_id, write_ref
LIMIT {limit:UInt32}
"""

# The runs listing: the run index and run facts of one tenant (one key range each), filtered, newest
# first; the cursor is the (first_start, run_id) of the last row of the previous page.
RUN_LIST: Final = """
SELECT
    r.run_id AS run_id, r.first_start_ns AS first_start_ns, r.last_end_ns AS last_end_ns,
    r.agent_id AS agent_id, r.agent_name AS agent_name, r.outcome AS outcome,
    r.span_count AS span_count, r.error_count AS error_count, r.write_tool_calls AS write_tool_calls,
    f.tools AS tools, f.autonomy_level AS autonomy_level
FROM (
    SELECT
        run_id,
        toUnixTimestamp64Nano(min(first_start)) AS first_start_ns,
        toUnixTimestamp64Nano(max(last_end)) AS last_end_ns,
        max(agent_id) AS agent_id, max(agent_name) AS agent_name, max(outcome) AS outcome,
        sum(span_count) AS span_count, sum(error_count) AS error_count, sum(write_tool_calls) AS write_tool_calls
    FROM runs
    WHERE tenant = {tenant:String}
    GROUP BY run_id
) AS r
LEFT JOIN (
    SELECT run_id, groupUniqArrayArray(tools) AS tools, max(autonomy_level) AS autonomy_level
    FROM run_facts
    WHERE tenant = {tenant:String}
    GROUP BY run_id
) AS f ON f.run_id = r.run_id
WHERE ({agent:String} = '' OR r.agent_id = {agent:String} OR r.agent_name = {agent:String})
  AND ({outcome:String} = '' OR r.outcome = {outcome:String})
  AND ({autonomy_level:String} = '' OR f.autonomy_level = {autonomy_level:String})
  AND ({tool:String} = '' OR has(f.tools, {tool:String}))
  AND r.first_start_ns >= {from_ns:Int64} AND r.first_start_ns <= {to_ns:Int64}
  AND (r.first_start_ns < {cursor_ns:Int64}
       OR (r.first_start_ns = {cursor_ns:Int64} AND r.run_id < {cursor_run:String}))
ORDER BY r.first_start_ns DESC, r.run_id DESC
LIMIT {limit:UInt32}
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
TIMELINE_ANNOTATIONS: Final = """
SELECT
    span_id, name, label, score, explanation, annotator_kind, annotator, source,
    toUnixTimestamp64Nano(created_at) AS created_ns,
    toUnixTimestamp64Nano(updated_at) AS updated_ns
FROM annotations FINAL
WHERE tenant = {tenant:String}
  AND (
    run_id = {run_id:String}
    OR (run_id IN {trace_ids:Array(String)} AND run_id = trace_id)
    OR (run_id = '' AND trace_id IN {trace_ids:Array(String)})
  )
ORDER BY created_at, annotation_id
"""
