-- The runs listing's rows from one table: the run index (runs, migration 0001) and the per-run facts
-- (run_facts, migration 0003) aggregated together under the same key, so a page is one key lookup per
-- candidate run with no join (the join of the two grouped tables cost a third of the listing). Filled
-- from each insert block of spans with exactly the expressions of runs_mv and run_facts_mv, deduplicated
-- like runs (a replayed block adds nothing: its sums would count twice), deleted with the run
-- (query_api/queries.py DELETE_RUN_DERIVED) and, like both, kept past the spans' retention.
-- `indexed` tells a row copied from runs (1) from one copied from run_facts alone (0): the listing shows
-- only runs the run index knows, as it did joining run_facts onto runs.
CREATE TABLE IF NOT EXISTS run_list
(
    tenant LowCardinality(String),
    run_id String,
    first_start SimpleAggregateFunction(min, DateTime64(9)),
    last_end SimpleAggregateFunction(max, DateTime64(9)),
    trace_ids SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    agent_id SimpleAggregateFunction(max, String),
    agent_name SimpleAggregateFunction(max, String),
    outcome SimpleAggregateFunction(max, String),
    span_count SimpleAggregateFunction(sum, UInt64),
    error_count SimpleAggregateFunction(sum, UInt64),
    write_tool_calls SimpleAggregateFunction(sum, UInt64),
    tools SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    autonomy_level SimpleAggregateFunction(max, String),
    indexed SimpleAggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, run_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS run_list_mv TO run_list AS
SELECT
    tenant,
    run_id,
    min(start_time) AS first_start,
    max(end_time) AS last_end,
    groupUniqArray(trace_id) AS trace_ids,
    max(toString(agent_id)) AS agent_id,
    max(toString(agent_name)) AS agent_name,
    max(toString(run_outcome)) AS outcome,
    toUInt64(count()) AS span_count,
    toUInt64(countIf(status_code = 'ERROR')) AS error_count,
    toUInt64(countIf(entry_type = 'tool_call' AND tool_access = 'write')) AS write_tool_calls,
    groupUniqArrayIf(toString(tool_name), tool_name != '' AND entry_type = 'tool_call') AS tools,
    max(attributes['agentledger.run.autonomy_level']) AS autonomy_level,
    toUInt8(1) AS indexed
FROM spans
WHERE run_id != ''
GROUP BY tenant, run_id;

-- Runs stored before this migration: every row of runs and of run_facts as it is (merged or not), each
-- with the other table's columns at the value their aggregate ignores (the latest start for a minimum,
-- empty for a maximum, zero for a sum).
INSERT INTO run_list
SELECT tenant, run_id, first_start, last_end, trace_ids, agent_id, agent_name, outcome, span_count, error_count,
       write_tool_calls, [], '', 1
FROM runs;

INSERT INTO run_list
SELECT tenant, run_id, toDateTime64('2262-04-11 23:47:16.854775807', 9, 'UTC'), toDateTime64(0, 9, 'UTC'), [], '',
       '', '', 0, 0, 0, tools, autonomy_level, 0
FROM run_facts;
