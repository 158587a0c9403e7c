-- The audit's cost baseline (total tokens of an agent's latest runs) read from a narrow table instead of
-- the spans table: one row per stored copy of each span that counts tokens, keyed like spans, so a run's
-- rows are one short key range and a replayed copy of a span collapses with the first (ReplacingMergeTree;
-- the reader also keeps one row per span before merges, as it did reading spans). Spans of a run that
-- arrive late add their rows like any other. Spans without tokens add nothing to a sum and are left out.
-- The span's retention and hold columns come along with the same TTL as spans (migration 0007), and holds
-- are mirrored here as onto spans (query_api/holds.py), so a row lives exactly as long as its span.
CREATE TABLE IF NOT EXISTS span_tokens
(
    tenant LowCardinality(String),
    run_id String,
    trace_id String,
    span_id String,
    input_tokens Int64,
    output_tokens Int64,
    agent_id LowCardinality(String),
    verified_agent_id LowCardinality(String),
    retain_until DateTime,
    legal_hold UInt8
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, run_id, trace_id, span_id)
TTL retain_until DELETE WHERE legal_hold = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS span_tokens_mv TO span_tokens AS
SELECT tenant, run_id, trace_id, span_id, input_tokens, output_tokens, agent_id, verified_agent_id,
       retain_until, legal_hold
FROM spans
WHERE run_id != '' AND (input_tokens != 0 OR output_tokens != 0);

-- Spans stored before this migration (re-running it adds copies that collapse).
INSERT INTO span_tokens
SELECT tenant, run_id, trace_id, span_id, input_tokens, output_tokens, agent_id, verified_agent_id,
       retain_until, legal_hold
FROM spans
WHERE run_id != '' AND (input_tokens != 0 OR output_tokens != 0);
