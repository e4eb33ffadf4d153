-- Import runs.

-- name: record_run(run_id, timestamp, plan_snapshot, counts_json, drift_json, is_indexed, duration_ms)!
-- Store a run; recording the same run_id again replaces what was stored. is_indexed
-- arrives as 0/1 (or NULL), as every dialect binds it.
INSERT INTO runs (
    run_id, timestamp, plan_snapshot, counts_json, drift_json, indexed, duration_ms
)
VALUES (
    :run_id,
    :timestamp,
    cast(:plan_snapshot AS JSONB),
    cast(:counts_json AS JSONB),
    cast(:drift_json AS JSONB),
    cast(:is_indexed AS INTEGER) <> 0,
    :duration_ms
)
ON CONFLICT (run_id) DO UPDATE SET
    timestamp = excluded.timestamp,
    plan_snapshot = excluded.plan_snapshot,
    counts_json = excluded.counts_json,
    drift_json = excluded.drift_json,
    indexed = excluded.indexed,
    duration_ms = excluded.duration_ms;

-- name: get_runs(max_rows)
-- The most recent runs first (by timestamp, then run_id, in byte order as on SQLite);
-- max_rows NULL means all.
SELECT
    run_id,
    timestamp,
    plan_snapshot,
    counts_json,
    drift_json,
    indexed,
    duration_ms
FROM runs
ORDER BY timestamp COLLATE "C" DESC, run_id COLLATE "C" DESC
LIMIT cast(:max_rows AS BIGINT);
