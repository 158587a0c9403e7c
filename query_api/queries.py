"""Every SQL statement the query API runs, parameterised with clickhouse-connect server-side binding."""

from __future__ import annotations

from typing import Final

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

# The run's spans: those carrying its id, plus id-less spans of its traces. Both are ranges of the
# (tenant, run_id, trace_id, span_id) key; LIMIT 1 BY hides replayed duplicates not yet merged away.
RUN_SPANS: Final = """
SELECT
    trace_id, span_id, parent_span_id,
    toUnixTimestamp64Nano(start_time) AS start_ns,
    toUnixTimestamp64Nano(end_time) AS end_ns,
    name, kind, status_code, status_message, service_name, entry_type,
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
  AND (run_id = {run_id:String} OR (run_id = '' AND trace_id IN {trace_ids:Array(String)}))
  AND start_time >= fromUnixTimestamp64Nano({from_ns:Int64})
  AND start_time <= fromUnixTimestamp64Nano({to_ns:Int64})
ORDER BY start_time, trace_id, span_id
LIMIT 1 BY trace_id, span_id
"""

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
