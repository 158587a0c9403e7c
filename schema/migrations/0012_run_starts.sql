-- Time-ordered run index: when each run started, sorted by that time, so the runs listing and the cost
-- baseline read the newest runs as one key range instead of grouping the whole run index per request.
-- One row per (run, insert block), exactly as runs_mv aggregates each block for the runs table: a run
-- whose spans arrived in several blocks has several rows, each at the earliest start of its block. The
-- readers therefore take a window of the newest rows as candidates and recompute each candidate's exact
-- start from the runs table; every run whose exact start lies inside the window has a row there (its
-- earliest block's), so nothing newer than the window's oldest row is missed (query_api/store/runs.py).
-- ReplacingMergeTree: the backfill below may be re-run and identical rows collapse.
CREATE TABLE IF NOT EXISTS run_starts
(
    tenant LowCardinality(String),
    first_start DateTime64(9),
    run_id String,
    agent_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, first_start, run_id, agent_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS run_starts_mv TO run_starts AS
SELECT tenant, min(start_time) AS first_start, run_id, max(toString(agent_id)) AS agent_id
FROM spans
WHERE run_id != ''
GROUP BY tenant, run_id;

-- Runs stored before this migration: every row of the runs table as it is (merged or not), so each
-- start the readers may recompute from runs is a row here too.
INSERT INTO run_starts
SELECT tenant, first_start, run_id, agent_id FROM runs;
