-- Audit chain v2 (schema/AUDIT_CHAIN.md): every link names its format and digest version and its place
-- in its collector's append-only log. The defaults keep rows written before this migration readable as
-- v1 links (format 1, digest 1, no collector log).
ALTER TABLE audit_chain ADD COLUMN IF NOT EXISTS format_version UInt8 DEFAULT 1;
ALTER TABLE audit_chain ADD COLUMN IF NOT EXISTS digest_version UInt8 DEFAULT 1;
ALTER TABLE audit_chain ADD COLUMN IF NOT EXISTS collector_id LowCardinality(String) DEFAULT '';
ALTER TABLE audit_chain ADD COLUMN IF NOT EXISTS log_index UInt64 DEFAULT 0;

-- Signed checkpoints of each (tenant, collector) log: its size and RFC 9162 Merkle root. The same lines
-- go to files outside ClickHouse (the checkpoint sink), which is what verification trusts.
CREATE TABLE IF NOT EXISTS audit_checkpoints
(
    tenant LowCardinality(String),
    collector_id LowCardinality(String),
    size UInt64,
    root String,
    time_ns Int64,
    format LowCardinality(String),
    signature String,
    recorded_at DateTime64(9) DEFAULT now64(9)
)
ENGINE = MergeTree
ORDER BY (tenant, collector_id, size, time_ns);

-- Spans re-sent with a stored (trace_id, span_id) but different content: stored spans are immutable, so
-- the re-sent copy is kept here as evidence instead of replacing the stored one.
CREATE TABLE IF NOT EXISTS span_conflicts
(
    tenant LowCardinality(String),
    run_id String,
    trace_id String,
    span_id String,
    collector_id LowCardinality(String),
    received_at DateTime64(9),
    digest_version UInt8,
    chained_digest String,
    received_digest String,
    -- The re-sent span's columns as JSON (times in nanoseconds).
    span_json String
)
ENGINE = MergeTree
ORDER BY (tenant, run_id, trace_id, span_id, received_at);
