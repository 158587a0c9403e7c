-- Retention with legal holds. The exporter stamps each span's retain_until from the tenant's
-- retention (2105-12-31 = keep); ClickHouse's TTL deletes expired spans unless legal_hold is set.
-- Holds are recorded in legal_holds and mirrored onto the spans they cover.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS retain_until DateTime DEFAULT toDateTime('2105-12-31 00:00:00', 'UTC');
ALTER TABLE spans ADD COLUMN IF NOT EXISTS legal_hold UInt8 DEFAULT 0;
ALTER TABLE spans MODIFY TTL retain_until DELETE WHERE legal_hold = 0;

CREATE TABLE IF NOT EXISTS legal_holds
(
    tenant LowCardinality(String),
    hold_id String,
    scope LowCardinality(String),
    target String,
    reason String,
    placed_by String,
    placed_at DateTime64(9),
    released_at Nullable(DateTime64(9)),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, hold_id);
