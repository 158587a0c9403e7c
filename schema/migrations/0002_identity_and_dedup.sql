-- The collector stamps the authenticated identity on every span and flags spans claiming another
-- agent; it records what it truncated. Insert deduplication tokens make spool replays exactly-once,
-- in spans and in the run index the materialized view fills (the window must be on both tables).
ALTER TABLE spans ADD COLUMN IF NOT EXISTS verified_agent_id LowCardinality(String);
ALTER TABLE spans ADD COLUMN IF NOT EXISTS identity_mismatch Bool;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS truncated Array(LowCardinality(String));
ALTER TABLE spans MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE runs MODIFY SETTING non_replicated_deduplication_window = 10000;
