"""The parity check: the dialects' migrations build the same logical schema.

Each dialect writes its own migrations, so a column added to one and forgotten in another
is only found when a user switches backends. From each scratch database's catalog
(:mod:`polylogue.sqlcheck.schema`) a :class:`LogicalSchema` is built in one vocabulary
(types ``text``, ``integer``, ``real``, ``boolean``, ``json``, ...; defaults without
casts; keys and indexes by column list), and the dialects are compared with the first one
checked. Intended differences are in :data:`ALLOWED`, each with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polylogue.sqlcheck.contract import shown_path
from polylogue.sqlcheck.findings import Finding
from polylogue.storage.migration_scripts import discover

# Declared types in a common vocabulary: bigint and integer are one, json and jsonb too.
_TYPES = {
    "text": "text",
    "varchar": "text",
    "character varying": "text",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "bigint": "integer",
    "int8": "integer",
    "real": "real",
    "double": "real",
    "double precision": "real",
    "float": "real",
    "boolean": "boolean",
    "bool": "boolean",
    "json": "json",
    "jsonb": "json",
    "blob": "blob",
    "bytea": "blob",
    "timestamp with time zone": "timestamp",
    "timestamptz": "timestamp",
    "timestamp with time zone[]": "timestamp[]",
}

Key = tuple[str, str, str]
"""(kind, table, item): ``("column.type", "messages", "role")``, ``("index", "runs",
"timestamp")``, ``("table", "runs", "")``, ``("version", "", "")``."""


@dataclass
class LogicalSchema:
    """One dialect's schema in the shared vocabulary: key -> normalised value."""

    dialect: str
    items: dict[Key, str] = field(default_factory=dict)
    scripts: list[Path] = field(default_factory=list)
    """The migration scripts that built it, for pointing findings at a file and line."""

    @classmethod
    def from_catalog(
        cls,
        dialect: str,
        catalog: Mapping[str, list[dict[str, Any]]],
        version: int,
        scripts: list[Path],
    ) -> LogicalSchema:
        """Build it from the rows of ``checks/catalog.sql``'s queries (by query name)."""
        schema = cls(dialect, scripts=scripts)
        items = schema.items
        items[("version", "", "")] = str(version)
        for row in catalog["catalog_columns"]:
            table, column = str(row["table_name"]), str(row["column_name"])
            items[("table", table, "")] = "present"
            items[("column.type", table, column)] = normalise_type(str(row["data_type"]))
            items[("column.not_null", table, column)] = str(bool(row["not_null"])).lower()
            # A generated column's expression is in each dialect's own JSON functions (and
            # DuckDB lists it as the default): only that it is generated is compared.
            items[("column.default", table, column)] = (
                "none" if row["is_generated"] else normalise_default(row["default_value"])
            )
            items[("column.generated", table, column)] = str(bool(row["is_generated"])).lower()
        for table, columns in _grouped(catalog["catalog_primary_keys"], "table_name").items():
            items[("primary_key", table, "")] = ", ".join(str(r["column_name"]) for r in columns)
            # SQLite lets a non-INTEGER primary key hold NULL (a legacy quirk); the binding
            # never writes one, so a key column counts as NOT NULL on every dialect.
            for row in columns:
                items[("column.not_null", table, str(row["column_name"]))] = "true"
        for row in catalog["catalog_foreign_keys"]:
            items[("foreign_key", str(row["table_name"]), str(row["column_name"]))] = (
                f"{row['ref_table']}({row['ref_column']}) on delete {str(row['on_delete']).lower()}"
            )
        for columns in _grouped(catalog["catalog_indexes"], "index_name").values():
            table = str(columns[0]["table_name"])
            listed = ", ".join(str(r["column_name"]) for r in columns)
            unique = bool(columns[0]["is_unique"])
            items[("index", table, listed)] = "unique" if unique else "index"
        return schema


def _grouped(rows: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (str(r[key]), int(r.get("position") or 0))):
        groups.setdefault(str(row[key]), []).append(row)
    return groups


def normalise_type(declared: str) -> str:
    """A declared type in the shared vocabulary (``VARCHAR`` -> ``text``)."""
    text = re.sub(r"\(.*\)", "", declared.strip().lower()).strip()
    return _TYPES.get(text, text)


def normalise_default(value: Any) -> str:
    """A column default without casts or quotes-around-numbers (``'0'::integer`` -> ``0``)."""
    if value is None:
        return "none"
    text = str(value).strip()
    text = re.sub(r"::[\w ]+$", "", text)  # PostgreSQL's casts
    text = re.sub(r"^CAST\((.*) AS \w+\)$", r"\1", text, flags=re.IGNORECASE)  # DuckDB's
    text = text.strip("()")
    if re.fullmatch(r"'-?\d+(\.\d+)?'", text):
        text = text.strip("'")
    return text.lower()


@dataclass(frozen=True)
class Allowed:
    """A known, intended difference: ``dialect`` differs from the others at items of
    ``kind`` (and ``table``/``item`` when given), with these values on its side."""

    dialect: str
    kind: str
    reason: str
    table: str = "*"
    item: str = "*"
    values: frozenset[str] | None = None
    """The values ``dialect`` may have there (None: any, missing included)."""

    def covers(self, dialect: str, key: Key, value: str | None) -> bool:
        kind, table, item = key
        return (
            dialect == self.dialect
            and kind == self.kind
            and self.table in ("*", table)
            and self.item in ("*", item)
            and (self.values is None or (value or "missing") in self.values)
        )


_JSON_COLUMNS = ("provider_meta", "plan_snapshot", "counts_json", "drift_json")

ALLOWED: tuple[Allowed, ...] = (
    *(
        Allowed(
            "sqlite",
            "column.type",
            "SQLite has no JSON type: JSON columns are TEXT, read with json_extract",
            item=column,
            values=frozenset({"text"}),
        )
        for column in _JSON_COLUMNS
    ),
    Allowed(
        "sqlite",
        "column.type",
        "SQLite has no BOOLEAN type: runs.indexed is an INTEGER 0/1 (rows.run_from_row"
        " turns it into a bool)",
        table="runs",
        item="indexed",
        values=frozenset({"integer"}),
    ),
    Allowed(
        "postgresql",
        "column.type",
        "PostgreSQL records applied_at as TIMESTAMPTZ (the bookkeeping query"
        " create_schema_migrations); SQLite and DuckDB keep ISO-8601 text",
        table="schema_migrations",
        item="applied_at",
        values=frozenset({"timestamp"}),
    ),
    Allowed(
        "duckdb",
        "foreign_key",
        "DuckDB has no ON DELETE CASCADE / SET NULL and checks deletes against the"
        " transaction's start (see migrations/duckdb/0004_baseline.sql); the binding deletes"
        " children itself and dangling_references stands in for the check",
        values=frozenset({"missing"}),
    ),
    *(
        Allowed(
            "duckdb",
            "index",
            reason,
            table=table,
            item=columns,
            values=frozenset({"missing"}),
        )
        for table, columns, reason in (
            (
                "conversations",
                "source_name",
                "DuckDB refuses indexes over JSON functions (source_name is generated from"
                " provider_meta); filtering by it scans one column",
            ),
            (
                "conversations",
                "updated_at, conversation_id",
                "DuckDB never walks an index in order; it sorts (top-N) instead",
            ),
            (
                "runs",
                "timestamp",
                "DuckDB never walks an index in order; it sorts (top-N) instead",
            ),
        )
    ),
)
"""Differences that are meant: each says which dialect differs, where, and why."""


def check_parity(schemas: Mapping[str, LogicalSchema]) -> list[Finding]:
    """Drift between the dialects' logical schemas: each compared with the first one."""
    if len(schemas) < 2:
        return []
    dialects = list(schemas)
    reference = schemas[dialects[0]]
    findings = []
    for other_name in dialects[1:]:
        other = schemas[other_name]
        for key in sorted(reference.items.keys() | other.items.keys()):
            ours, theirs = reference.items.get(key), other.items.get(key)
            if ours == theirs:
                continue
            if any(
                allowed.covers(reference.dialect, key, ours)
                or allowed.covers(other.dialect, key, theirs)
                for allowed in ALLOWED
            ):
                continue
            if _implied(key, reference, other):
                continue
            findings.append(_drift(key, reference, ours, other, theirs))
    return findings


def _implied(key: Key, first: LogicalSchema, second: LogicalSchema) -> bool:
    """A column's details are not reported again when the whole column or table is missing."""
    kind, table, item = key
    if kind == "table":
        return False
    if ("table", table, "") not in first.items or ("table", table, "") not in second.items:
        return True
    if kind.startswith("column.") and kind != "column.type":
        type_key = ("column.type", table, item)
        return type_key not in first.items or type_key not in second.items
    return False


def _drift(
    key: Key, first: LogicalSchema, ours: str | None, second: LogicalSchema, theirs: str | None
) -> Finding:
    kind, table, item = key
    what = {
        "table": f"table {table}",
        "version": "schema version",
        "primary_key": f"primary key of {table}",
        "index": f"index on {table} ({item})",
        "foreign_key": f"foreign key {table}.{item}",
    }.get(kind, f"{table}.{item} {kind.removeprefix('column.')}")
    if kind.startswith("column.") and (ours is None or theirs is None):
        what = f"column {table}.{item}"
    # Point at the dialect that has the thing (the one whose migration added it).
    has = second if theirs is not None and ours is None else first
    lacks = first if has is second else second
    path, line = _where(has, table, item if kind != "index" else "")
    return Finding(
        check="parity",
        severity="error",
        message=(
            f"{what}: {first.dialect} has {ours or 'none'}, {second.dialect} has"
            f" {theirs or 'none'}; make the migrations of {lacks.dialect} and {has.dialect}"
            " build the same schema, or add the difference to ALLOWED in"
            " polylogue/sqlcheck/parity.py with its reason"
        ),
        dialect=second.dialect,
        file=shown_path(path) if path else None,
        line=line,
        name=f"{table}.{item}".strip(".") or None,
    )


def _where(schema: LogicalSchema, table: str, item: str) -> tuple[Path | None, int | None]:
    """The newest script line of ``schema``'s migrations naming ``item`` (else ``table``)."""
    for word in (item, table):
        if not word:
            continue
        pattern = re.compile(rf"\b{re.escape(word.split(',')[0].strip())}\b")
        for path in reversed(schema.scripts):
            for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(text) and not text.lstrip().startswith("--"):
                    return path, number
    return (schema.scripts[-1], 1) if schema.scripts else (None, None)


def check_migration_numbers(folders: Mapping[str, Path]) -> list[Finding]:
    """A migration number in one dialect and not another, from each dialect's baseline on
    (SQLite's history before the PostgreSQL/DuckDB baseline is not theirs to have)."""
    versions: dict[str, dict[int, Path]] = {}
    for dialect, folder in folders.items():
        try:
            versions[dialect] = {s.version: s.path for s in discover(dialect, folder)}
        except Exception:  # bad names or gaps: the migrations check reports those
            versions[dialect] = {
                int(p.name[:4]): p for p in sorted(folder.glob("*.sql")) if p.name[:4].isdigit()
            }
    if len(versions) < 2:
        return []
    start = max(min(found, default=0) for found in versions.values())
    findings = []
    for dialect, found in versions.items():
        for other, theirs in versions.items():
            for version in sorted(set(found) - set(theirs)):
                if version < start:
                    continue
                path = found[version]
                findings.append(
                    Finding(
                        check="parity",
                        severity="error",
                        message=(
                            f"migration {version:04d} exists for {dialect} but not for"
                            f" {other}: add migrations/{other}/{path.name} with the same"
                            " change (every dialect gets each migration number)"
                        ),
                        dialect=other,
                        file=shown_path(path),
                        line=1,
                        name=path.stem,
                    )
                )
    return findings


__all__ = [
    "ALLOWED",
    "Allowed",
    "LogicalSchema",
    "check_migration_numbers",
    "check_parity",
    "normalise_default",
    "normalise_type",
]
