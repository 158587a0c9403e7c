-- Lookup indexes for the query API, so every lookup is a key range: references (write refs, targets)
-- -> runs and spans, and per-run facts the runs listing filters on (tools used, autonomy level).
-- Each table is filled by materialized views and backfilled from rows stored before this migration.
-- Re-running a backfill is harmless: refs collapses duplicates (ReplacingMergeTree) and run_facts
-- aggregates with idempotent functions (max, groupUniqArray).

-- One row per (reference, run, span or write): `kind` is write_ref (PR URL, ticket key, record id)
-- or target (customer, repository, project). Sorted by the reference, so "who touched X" reads one range.
CREATE TABLE IF NOT EXISTS refs
(
    tenant LowCardinality(String),
    kind LowCardinality(String),
    value String,
    run_id String,
    source LowCardinality(String),
    trace_id String,
    span_id String,
    name String,
    tool_call_id String,
    write_ref String,
    at DateTime64(9)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, kind, value, run_id, source, trace_id, span_id, write_ref);

CREATE MATERIALIZED VIEW IF NOT EXISTS refs_span_write_ref_mv TO refs AS
SELECT tenant, 'write_ref' AS kind, write_ref AS value, run_id, 'span' AS source, trace_id, span_id,
       toString(name) AS name, attributes['agentledger.write.tool_call.id'] AS tool_call_id, write_ref,
       start_time AS at
FROM spans WHERE write_ref != '' AND run_id != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS refs_span_target_mv TO refs AS
SELECT tenant, 'target' AS kind, target AS value, run_id, 'span' AS source, trace_id, span_id,
       toString(name) AS name, tool_call_id, write_ref, start_time AS at
FROM spans WHERE target != '' AND run_id != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS refs_write_ref_mv TO refs AS
SELECT tenant, 'write_ref' AS kind, ref AS value, run_id, 'write' AS source, '' AS trace_id, '' AS span_id,
       concat(toString(system), ' ', toString(action)) AS name, tool_call_id, ref AS write_ref, occurred_at AS at
FROM writes WHERE ref != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS refs_write_target_mv TO refs AS
SELECT tenant, 'target' AS kind, target AS value, run_id, 'write' AS source, '' AS trace_id, '' AS span_id,
       concat(toString(system), ' ', toString(action)) AS name, tool_call_id, ref AS write_ref, occurred_at AS at
FROM writes WHERE target != '';

INSERT INTO refs
SELECT tenant, 'write_ref', write_ref, run_id, 'span', trace_id, span_id, toString(name),
       attributes['agentledger.write.tool_call.id'], write_ref, start_time
FROM spans WHERE write_ref != '' AND run_id != '';

INSERT INTO refs
SELECT tenant, 'target', target, run_id, 'span', trace_id, span_id, toString(name), tool_call_id, write_ref, start_time
FROM spans WHERE target != '' AND run_id != '';

INSERT INTO refs
SELECT tenant, 'write_ref', ref, run_id, 'write', '', '', concat(toString(system), ' ', toString(action)),
       tool_call_id, ref, occurred_at
FROM writes WHERE ref != '';

INSERT INTO refs
SELECT tenant, 'target', target, run_id, 'write', '', '', concat(toString(system), ' ', toString(action)),
       tool_call_id, ref, occurred_at
FROM writes WHERE target != '';

-- Per-run facts beside the runs index (same key): tools called and the autonomy level granted.
CREATE TABLE IF NOT EXISTS run_facts
(
    tenant LowCardinality(String),
    run_id String,
    tools SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    autonomy_level SimpleAggregateFunction(max, String)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS run_facts_mv TO run_facts AS
SELECT
    tenant,
    run_id,
    groupUniqArrayIf(toString(tool_name), tool_name != '' AND entry_type = 'tool_call') AS tools,
    max(attributes['agentledger.run.autonomy_level']) AS autonomy_level
FROM spans
WHERE run_id != ''
GROUP BY tenant, run_id;

INSERT INTO run_facts
SELECT
    tenant,
    run_id,
    groupUniqArrayIf(toString(tool_name), tool_name != '' AND entry_type = 'tool_call'),
    max(attributes['agentledger.run.autonomy_level'])
FROM spans
WHERE run_id != ''
GROUP BY tenant, run_id;
