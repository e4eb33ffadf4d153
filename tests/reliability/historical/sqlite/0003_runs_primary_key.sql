-- Schema version 3: runs gets run_id as its primary key.
-- Version 1 allowed NULL and repeated run ids. Nothing is dropped: a NULL id becomes
-- 'run-legacy-<rowid>' and every repeat after the first becomes '<run_id>-dup-<rowid>'.

ALTER TABLE runs RENAME TO runs_v2;

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    plan_snapshot TEXT,
    counts_json TEXT,
    drift_json TEXT,
    "indexed" INTEGER,
    duration_ms INTEGER
);

INSERT INTO runs (
    run_id, timestamp, plan_snapshot, counts_json, drift_json, "indexed", duration_ms
)
SELECT
    CASE
        WHEN old.run_id IS NULL THEN 'run-legacy-' || old.rowid
        WHEN
            old.rowid = (
                SELECT min(o2.rowid) FROM runs_v2 AS o2
                WHERE o2.run_id = old.run_id
            )
            THEN old.run_id
        ELSE old.run_id || '-dup-' || old.rowid
    END AS run_id,
    old.timestamp,
    old.plan_snapshot,
    old.counts_json,
    old.drift_json,
    old."indexed",
    old.duration_ms
FROM runs_v2 AS old
ORDER BY old.rowid;

DROP TABLE runs_v2;

CREATE INDEX idx_runs_timestamp ON runs (timestamp);
