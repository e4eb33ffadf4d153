"""The migration safety lint: each rule fires on a minimal bad script added after the
packaged history, stays quiet on the safe form and when silenced with a reason, and the
shipped migrations of every dialect pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from polylogue.sqlcheck import lint
from polylogue.sqlcheck.findings import Finding
from polylogue.sqlcheck.lint import RULES, SHIPPED_BEFORE_LINT, lint_migrations
from polylogue.storage.migration_scripts import discover
from polylogue.storage.sqlfiles import resource_dir

DIALECTS = ("sqlite", "postgresql", "duckdb")
MARKER = "-- polylogue: no-transaction\n"


def probe_folder(tmp_path: Path, dialect: str, sql: str) -> Path:
    """The packaged migrations of ``dialect`` plus ``sql`` as the next script."""
    folder = tmp_path / dialect
    shutil.copytree(resource_dir("migrations", dialect), folder)
    following = discover(dialect, folder)[-1].version + 1
    (folder / f"{following:04d}_lint_probe.sql").write_text(sql)
    return folder


def lint_probe(
    tmp_path: Path, dialect: str, sql: str, *, runner_checks_foreign_keys: bool | None = None
) -> list[Finding]:
    return lint_migrations(
        dialect,
        probe_folder(tmp_path, dialect, sql),
        runner_checks_foreign_keys=runner_checks_foreign_keys,
    )


def hits(findings: list[Finding]) -> list[tuple[str | None, int | None]]:
    return [(f.name, f.line) for f in findings]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_shipped_migrations_pass(dialect: str) -> None:
    assert lint_migrations(dialect) == []


BAD: list[tuple[str, str, str, list[tuple[str, int]]]] = [
    (
        "sqlite",
        "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL;\n",
        "add-not-null-without-default",
        [("add-not-null-without-default", 1)],
    ),
    (
        "postgresql",
        "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL, ADD COLUMN other TEXT;\n",
        "add-not-null-without-default",
        [("add-not-null-without-default", 1)],
    ),
    (
        "sqlite",
        "CREATE UNIQUE INDEX idx_messages_hash ON messages (content_hash);\n",
        "unique-index-on-existing-table",
        [("unique-index-on-existing-table", 1)],
    ),
    (
        "duckdb",
        "ALTER TABLE runs ADD CONSTRAINT runs_timestamp_key UNIQUE (timestamp);\n",
        "unique-index-on-existing-table",
        [("unique-index-on-existing-table", 1)],
    ),
    (
        "postgresql",
        MARKER + "CREATE UNIQUE INDEX CONCURRENTLY idx_messages_hash ON messages (content_hash);\n",
        "unique-index-on-existing-table",
        [("unique-index-on-existing-table", 2)],
    ),
    ("duckdb", "DROP TABLE runs;\n", "drop-table", [("drop-table", 1)]),
    (
        "duckdb",
        "CREATE OR REPLACE TABLE runs (run_id VARCHAR PRIMARY KEY);\n",
        "drop-table",
        [("drop-table", 1)],
    ),
    (
        "sqlite",
        "ALTER TABLE runs DROP COLUMN duration_ms;\n",
        "drop-column",
        [("drop-column", 1)],
    ),
    (
        "postgresql",
        "ALTER TABLE runs DROP duration_ms;\n",
        "drop-column",
        [("drop-column", 1)],
    ),
    (
        "postgresql",
        "ALTER TABLE runs ALTER COLUMN duration_ms TYPE integer;\n",
        "change-column-type",
        [("change-column-type", 1)],
    ),
    (
        "duckdb",
        "ALTER TABLE runs ALTER duration_ms SET DATA TYPE INTEGER;\n",
        "change-column-type",
        [("change-column-type", 1)],
    ),
    (
        "postgresql",
        "CREATE INDEX idx_messages_role ON messages (role);\n",
        "index-without-concurrently",
        [("index-without-concurrently", 1)],
    ),
    (
        "postgresql",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_role ON messages (role);\n",
        "concurrently-in-transaction",
        [("concurrently-in-transaction", 1)],
    ),
    (
        "duckdb",
        "CREATE TABLE tags (\n"
        "    tag VARCHAR,\n"
        "    conversation_id VARCHAR REFERENCES conversations (conversation_id)\n"
        "    ON DELETE CASCADE\n"
        ");\n",
        "duckdb-unsupported",
        [("duckdb-unsupported", 1)],
    ),
    (
        "duckdb",
        "SAVEPOINT before_tags;\n",
        "duckdb-unsupported",
        [("duckdb-unsupported", 1)],
    ),
]


@pytest.mark.parametrize(
    ("dialect", "sql", "rule", "expected"), BAD, ids=[f"{d}-{r}" for d, _, r, _ in BAD]
)
def test_rule_fires(
    tmp_path: Path, dialect: str, sql: str, rule: str, expected: list[tuple[str, int]]
) -> None:
    findings = lint_probe(tmp_path, dialect, sql)
    assert hits(findings) == expected
    finding = findings[0]
    assert finding.check == "lint"
    assert finding.severity == "error"
    assert finding.dialect == dialect
    assert finding.file is not None and finding.file.endswith(f"{dialect}/0005_lint_probe.sql")
    assert RULES[rule] in finding.message
    assert f"-- polylogue-lint: allow {rule} <reason>" in finding.message


@pytest.mark.parametrize(
    ("dialect", "sql", "rule", "expected"), BAD, ids=[f"{d}-{r}" for d, _, r, _ in BAD]
)
def test_silenced_with_a_reason(
    tmp_path: Path, dialect: str, sql: str, rule: str, expected: list[tuple[str, int]]
) -> None:
    marker = MARKER if sql.startswith(MARKER) else ""
    silenced = marker + f"-- polylogue-lint: allow {rule} checked on a copy of production\n"
    assert lint_probe(tmp_path, dialect, silenced + sql.removeprefix(marker)) == []


def test_unique_index_without_concurrently_is_two_findings(tmp_path: Path) -> None:
    sql = "CREATE UNIQUE INDEX idx_messages_hash ON messages (content_hash);\n"
    assert hits(lint_probe(tmp_path, "postgresql", sql)) == [
        ("index-without-concurrently", 1),
        ("unique-index-on-existing-table", 1),
    ]


def test_silence_covers_only_the_rule_it_names(tmp_path: Path) -> None:
    sql = (
        "-- polylogue-lint: allow unique-index-on-existing-table hashes are unique since v2\n"
        "CREATE UNIQUE INDEX idx_messages_hash ON messages (content_hash);\n"
    )
    assert hits(lint_probe(tmp_path, "postgresql", sql)) == [("index-without-concurrently", 2)]


def test_several_silences_above_one_statement(tmp_path: Path) -> None:
    sql = (
        "-- polylogue-lint: allow unique-index-on-existing-table hashes are unique since v2\n"
        "-- Built while the archive is offline for the upgrade:\n"
        "-- polylogue-lint: allow index-without-concurrently archives are small\n"
        "CREATE UNIQUE INDEX idx_messages_hash ON messages (content_hash);\n"
    )
    assert lint_probe(tmp_path, "postgresql", sql) == []


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("sqlite", "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT '';\n"),
        ("postgresql", "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT 'none';\n"),
        ("sqlite", "ALTER TABLE runs ADD COLUMN note TEXT;\n"),
        ("sqlite", "ALTER TABLE runs ADD COLUMN note TEXT CHECK (note IS NOT NULL);\n"),
        (
            "sqlite",
            "ALTER TABLE runs ADD COLUMN day TEXT NOT NULL"
            " GENERATED ALWAYS AS (substr(timestamp, 1, 10)) VIRTUAL;\n",
        ),
        ("postgresql", "ALTER TABLE runs ALTER COLUMN duration_ms DROP NOT NULL;\n"),
        ("postgresql", "ALTER TABLE runs DROP CONSTRAINT runs_pkey;\n"),
        ("postgresql", "ALTER TABLE runs RENAME COLUMN duration_ms TO took_ms;\n"),
        ("sqlite", "CREATE INDEX idx_messages_role ON messages (role);\n"),
        ("duckdb", "CREATE INDEX idx_messages_role ON messages (role);\n"),
        (
            "postgresql",
            MARKER
            + "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_role ON messages (role);\n",
        ),
        (
            "postgresql",
            MARKER + "DROP INDEX CONCURRENTLY IF EXISTS idx_runs_timestamp;\n",
        ),
        ("postgresql", "REFRESH MATERIALIZED VIEW CONCURRENTLY run_totals;\n"),
        ("duckdb", "DROP INDEX idx_messages_conversation CASCADE;\n"),
        # Keywords inside strings and comments are not statements.
        ("sqlite", "-- DROP TABLE runs; would lose them\nDELETE FROM runs WHERE run_id = 'x';\n"),
        ("duckdb", 'UPDATE runs SET drift_json = \'{"note": "ON DELETE CASCADE"}\';\n'),
        (
            "postgresql",
            "COMMENT ON TABLE runs IS $$DROP TABLE runs; ALTER TABLE runs DROP x$$;\n",
        ),
    ],
)
def test_safe_forms_are_quiet(tmp_path: Path, dialect: str, sql: str) -> None:
    assert lint_probe(tmp_path, dialect, sql) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_table_created_in_the_same_script_is_new(tmp_path: Path, dialect: str) -> None:
    sql = (
        "CREATE TABLE tags (tag TEXT PRIMARY KEY, label TEXT);\n"
        "ALTER TABLE tags ADD COLUMN weight INTEGER NOT NULL;\n"
        "CREATE UNIQUE INDEX idx_tags_label ON tags (label);\n"
        "ALTER TABLE tags DROP COLUMN weight;\n"
        "DROP TABLE tags;\n"
    )
    assert lint_probe(tmp_path, dialect, sql) == []


def test_a_new_table_keeps_being_new_under_its_new_name(tmp_path: Path) -> None:
    sql = (
        "CREATE TABLE tags_new (tag TEXT PRIMARY KEY);\n"
        "ALTER TABLE tags_new RENAME TO tags;\n"
        "CREATE INDEX idx_tags_tag ON tags (tag);\n"
        "ALTER TABLE runs RENAME TO runs_old;\n"
        "CREATE INDEX idx_runs_old_duration ON runs_old (duration_ms);\n"
    )
    assert hits(lint_probe(tmp_path, "postgresql", sql)) == [("index-without-concurrently", 5)]


REBUILD = """\
-- Rebuild runs with a CHECK on duration_ms.
CREATE TABLE runs_new (
    run_id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    plan_snapshot TEXT,
    counts_json TEXT,
    drift_json TEXT,
    "indexed" INTEGER,
    duration_ms INTEGER CHECK (duration_ms >= 0)
);

INSERT INTO runs_new SELECT * FROM runs;

-- polylogue-lint: allow drop-table every row was copied into runs_new above
DROP TABLE runs;

ALTER TABLE runs_new RENAME TO runs;
"""


def test_rebuild_is_satisfied_by_the_runners_foreign_key_check(tmp_path: Path) -> None:
    # The SQLite backend declares foreign_key_check, which the runner runs before commit.
    assert lint_probe(tmp_path, "sqlite", REBUILD) == []


def test_rebuild_without_any_foreign_key_check(tmp_path: Path) -> None:
    findings = lint_probe(tmp_path, "sqlite", REBUILD, runner_checks_foreign_keys=False)
    assert hits(findings) == [("rebuild-without-foreign-key-check", 15)]
    assert "rebuild of runs" in findings[0].message


def test_rebuild_with_its_own_foreign_key_check(tmp_path: Path) -> None:
    sql = REBUILD + "\nPRAGMA foreign_key_check;\n"
    assert lint_probe(tmp_path, "sqlite", sql, runner_checks_foreign_keys=False) == []


def test_rename_first_rebuild_is_a_rebuild(tmp_path: Path) -> None:
    sql = (
        "ALTER TABLE runs RENAME TO runs_old;\n"
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, timestamp TEXT NOT NULL);\n"
        "INSERT INTO runs SELECT run_id, timestamp FROM runs_old;\n"
        "DROP TABLE runs_old;\n"
    )
    assert hits(lint_probe(tmp_path, "sqlite", sql, runner_checks_foreign_keys=False)) == [
        ("drop-table", 4),
        ("rebuild-without-foreign-key-check", 4),
    ]


def test_shipped_rebuilds_would_fire_drop_table_but_for_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lint, "SHIPPED_BEFORE_LINT", frozenset())
    findings = lint_migrations("sqlite")
    assert [(f.file, f.line, f.name) for f in findings] == [
        ("migrations/sqlite/0002_attachment_refs.sql", 83, "drop-table"),
        ("migrations/sqlite/0003_runs_primary_key.sql", 45, "drop-table"),
        ("migrations/sqlite/0004_conversation_source_name.sql", 44, "drop-table"),
    ]
    assert {name for _, name in SHIPPED_BEFORE_LINT} == {
        script.name for script in discover("sqlite")[1:4]
    }


def test_silence_without_a_reason_is_reported_and_silences_nothing(tmp_path: Path) -> None:
    sql = "CREATE TABLE tags (tag TEXT);\n\n-- polylogue-lint: allow drop-table\nDROP TABLE runs;\n"
    findings = lint_probe(tmp_path, "sqlite", sql)
    assert hits(findings) == [("silence-without-reason", 3), ("drop-table", 4)]
    assert "no reason" in findings[0].message
    assert "'-- polylogue-lint: allow drop-table <why" in findings[0].message


def test_the_silence_rules_cannot_be_silenced(tmp_path: Path) -> None:
    sql = (
        "-- polylogue-lint: allow silence-without-reason we know\n"
        "-- polylogue-lint: allow drop-table\n"
        "DROP TABLE runs;\n"
    )
    assert hits(lint_probe(tmp_path, "sqlite", sql)) == [
        ("bad-silence", 1),
        ("silence-without-reason", 2),
        ("drop-table", 3),
    ]


def test_silence_of_an_unknown_rule(tmp_path: Path) -> None:
    sql = "-- polylogue-lint: allow drop-tables the old runs are obsolete\nDROP TABLE runs;\n"
    findings = lint_probe(tmp_path, "sqlite", sql)
    assert hits(findings) == [("bad-silence", 1), ("drop-table", 2)]
    assert "'drop-tables'" in findings[0].message


def test_silence_apart_from_its_statement(tmp_path: Path) -> None:
    sql = "-- polylogue-lint: allow drop-table the old runs are obsolete\n\nDROP TABLE runs;\n"
    assert hits(lint_probe(tmp_path, "sqlite", sql)) == [("bad-silence", 1), ("drop-table", 3)]


def test_line_numbers_count_comments_and_multiline_statements(tmp_path: Path) -> None:
    sql = (
        "-- Version 5: tidy runs.\n"  # 1
        "\n"  # 2
        "CREATE TABLE tags (\n"  # 3
        "    tag TEXT -- a comment; with a semicolon\n"  # 4
        ");\n"  # 5
        "/* a block comment\n"  # 6
        "   over lines; */\n"  # 7
        "INSERT INTO tags VALUES ('a;\n"  # 8
        "b');\n"  # 9
        "\n"  # 10
        "ALTER TABLE runs\n"  # 11
        "    DROP COLUMN duration_ms;  DROP TABLE messages;\n"  # 12
        "\n"  # 13
        "DROP TABLE\n"  # 14
        "    conversations"  # 15: the last statement has no semicolon
    )
    assert hits(lint_probe(tmp_path, "sqlite", sql)) == [
        ("drop-column", 11),
        ("drop-table", 12),
        ("drop-table", 14),
    ]


def test_silence_above_the_first_statement_is_not_a_header_directive(tmp_path: Path) -> None:
    # A "-- polylogue:" comment there would be refused by discover() as an unknown directive.
    sql = "-- polylogue-lint: allow drop-table runs are rebuilt from the logs\nDROP TABLE runs;\n"
    folder = probe_folder(tmp_path, "sqlite", sql)
    assert discover("sqlite", folder)[-1].name == "0005_lint_probe"
    assert lint_migrations("sqlite", folder) == []


def test_dialect_rules_stay_in_their_dialect(tmp_path: Path) -> None:
    # CONCURRENTLY means nothing to SQLite, CASCADE is SQLite's own business.
    sql = (
        "CREATE TABLE tags (\n"
        "    tag TEXT,\n"
        "    conversation_id TEXT REFERENCES conversations (conversation_id) ON DELETE CASCADE\n"
        ");\n"
        "CREATE INDEX idx_messages_role ON messages (role);\n"
    )
    assert lint_probe(tmp_path, "sqlite", sql) == []


def test_every_rule_has_a_reason_and_is_documented() -> None:
    doc = lint.__doc__ or ""
    for rule, reason in RULES.items():
        assert reason and "\n" not in reason
        assert rule in doc
