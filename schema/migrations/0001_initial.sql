-- Initial schema: spans, the run index (filled by a materialized view), downstream writes, annotations.
-- Statements are separated by lines holding only `;`-terminated SQL; every one is idempotent.

-- One row per span. Columns promoted from the registry (schema/registry/*.yaml, `column:`) are typed so
-- timelines and audits filter without touching the attributes Map; big content sits in its own ZSTD
-- columns because large prompts inside a Map make every read of the Map expensive.
-- ReplacingMergeTree on (tenant, run_id, trace_id, span_id): a span re-sent by a spool replay collapses
-- to one row; readers also dedupe with LIMIT 1 BY until merges have run.
-- Spans without a run id sort under run_id = '' by trace, so "the run's traces" is a key range too.
CREATE TABLE IF NOT EXISTS spans
(
    tenant LowCardinality(String),
    run_id String,
    trace_id String,
    span_id String,
    parent_span_id String,
    start_time DateTime64(9) CODEC(Delta, ZSTD(1)),
    end_time DateTime64(9) CODEC(Delta, ZSTD(1)),
    duration_ns UInt64,
    name LowCardinality(String),
    kind LowCardinality(String),
    status_code LowCardinality(String),
    status_message String,
    service_name LowCardinality(String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    entry_type LowCardinality(String),
    agent_id LowCardinality(String),
    agent_name LowCardinality(String),
    operation LowCardinality(String),
    model LowCardinality(String),
    input_tokens Int64,
    output_tokens Int64,
    context_hash String,
    provenance LowCardinality(String),
    tool_name LowCardinality(String),
    tool_call_id String,
    tool_access LowCardinality(String),
    target String,
    arguments_hash String,
    approval_decision LowCardinality(String),
    approver String,
    policy_id LowCardinality(String),
    policy_decision LowCardinality(String),
    write_system LowCardinality(String),
    write_ref String,
    run_outcome LowCardinality(String),
    input_value String CODEC(ZSTD(3)),
    output_value String CODEC(ZSTD(3)),
    system_instructions String CODEC(ZSTD(3)),
    input_messages String CODEC(ZSTD(3)),
    output_messages String CODEC(ZSTD(3)),
    tool_arguments String CODEC(ZSTD(3)),
    tool_result String CODEC(ZSTD(3)),
    retrieval_documents String CODEC(ZSTD(3)),
    attributes Map(LowCardinality(String), String),
    resource_attributes Map(LowCardinality(String), String),
    event_times Array(DateTime64(9)),
    event_names Array(LowCardinality(String)),
    event_attributes Array(Map(LowCardinality(String), String)),
    link_trace_ids Array(String),
    link_span_ids Array(String),
    link_attributes Array(Map(LowCardinality(String), String)),
    ingested_at DateTime64(9) DEFAULT now64(9),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_write_ref write_ref TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_target target TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(start_time)
ORDER BY (tenant, run_id, trace_id, span_id);

-- Run index: run id -> traces, time range, agent, outcome. Timelines read this first and then only
-- the key ranges it names, never scanning spans.
CREATE TABLE IF NOT EXISTS runs
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
    write_tool_calls SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, run_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS runs_mv TO runs AS
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
    toUInt64(countIf(entry_type = 'tool_call' AND tool_access = 'write')) AS write_tool_calls
FROM spans
WHERE run_id != ''
GROUP BY tenant, run_id;

-- Downstream writes as the systems written to report them (webhooks, imports, the API). Each carries
-- the run id the agent attached (PR trailer, ticket field, CRM field).
CREATE TABLE IF NOT EXISTS writes
(
    tenant LowCardinality(String),
    run_id String,
    system LowCardinality(String),
    ref String,
    action LowCardinality(String),
    target String,
    occurred_at DateTime64(9),
    tool_call_id String,
    source LowCardinality(String),
    title String,
    url String,
    actor String,
    payload String CODEC(ZSTD(3)),
    received_at DateTime64(9) DEFAULT now64(9),
    INDEX idx_ref ref TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_target target TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (tenant, run_id, system, ref, occurred_at);

-- Reviewers' annotations and evaluations of spans (Phoenix sync, API), newest version per id wins.
CREATE TABLE IF NOT EXISTS annotations
(
    tenant LowCardinality(String),
    run_id String,
    trace_id String,
    span_id String,
    annotation_id String,
    name LowCardinality(String),
    label String,
    score Nullable(Float64),
    explanation String,
    annotator_kind LowCardinality(String),
    annotator String,
    source LowCardinality(String),
    created_at DateTime64(9),
    updated_at DateTime64(9)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (tenant, run_id, trace_id, span_id, annotation_id);
