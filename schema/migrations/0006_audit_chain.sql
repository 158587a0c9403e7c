-- Tamper-evident record: one row per (run, exported batch) linking the batch's span digests to the
-- previous link of the same run (see schema/AUDIT_CHAIN.md). Append-only by convention and by use:
-- nothing in agentledger updates or deletes it; deletions of spans add tombstone links instead.
CREATE TABLE IF NOT EXISTS audit_chain
(
    tenant LowCardinality(String),
    run_id String,
    seq UInt64,
    kind LowCardinality(String),
    batch_time_ns Int64,
    span_keys Array(String),
    span_digests Array(String),
    -- When each span's retention ends (unix seconds): a span gone after it was pruned by policy.
    span_retain_until Array(Int64),
    -- Tombstones: why and by whom spans were deleted on request.
    note String,
    prev_link String,
    link String,
    signature String,
    recorded_at DateTime64(9) DEFAULT now64(9)
)
ENGINE = MergeTree
ORDER BY (tenant, run_id, seq)
SETTINGS non_replicated_deduplication_window = 10000;
