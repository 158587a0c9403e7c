-- What the runs listing shows of each run's usage (workflow, tokens, cost) read from a narrow table instead
-- of the spans' attributes: one row per stored copy of each span that adds to it (a run span names the
-- workflow, a model call counts tokens, a tool reports its cost), keyed like spans, so a page of runs is one
-- short key range and a replayed copy of a span collapses with the first (ReplacingMergeTree; the reader
-- also keeps one row per span before merges, as it did reading spans). A span adding nothing (no tokens,
-- no tool cost, not a run span) would only add zeros: it is left out. Late spans add rows like any other.
-- The span's retention and hold columns come along with the same TTL as spans (migration 0007), and holds
-- are mirrored here as onto spans (query_api/holds.py; an agent's hold finds its rows by the agent columns),
-- so a row lives exactly as long as its span.
CREATE TABLE IF NOT EXISTS span_usage
(
    tenant LowCardinality(String),
    run_id String,
    trace_id String,
    span_id String,
    entry_type LowCardinality(String),
    model LowCardinality(String),
    input_tokens Int64,
    output_tokens Int64,
    workflow String,
    tool_cost String,
    agent_id LowCardinality(String),
    verified_agent_id LowCardinality(String),
    retain_until DateTime,
    legal_hold UInt8
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, run_id, trace_id, span_id)
TTL retain_until DELETE WHERE legal_hold = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS span_usage_mv TO span_usage AS
SELECT tenant, run_id, trace_id, span_id, entry_type, model, input_tokens, output_tokens,
       attributes['gen_ai.workflow.name'] AS workflow, attributes['agentledger.tool.cost'] AS tool_cost,
       agent_id, verified_agent_id, retain_until, legal_hold
FROM spans
WHERE run_id != ''
  AND (input_tokens != 0 OR output_tokens != 0 OR entry_type = 'run' OR attributes['agentledger.tool.cost'] != '');

-- Spans stored before this migration (re-running it adds copies that collapse).
INSERT INTO span_usage
SELECT tenant, run_id, trace_id, span_id, entry_type, model, input_tokens, output_tokens,
       attributes['gen_ai.workflow.name'], attributes['agentledger.tool.cost'], agent_id, verified_agent_id,
       retain_until, legal_hold
FROM spans
WHERE run_id != ''
  AND (input_tokens != 0 OR output_tokens != 0 OR entry_type = 'run' OR attributes['agentledger.tool.cost'] != '');
