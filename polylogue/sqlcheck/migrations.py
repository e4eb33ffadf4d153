"""The migrations check: names, numbering and sqlfluff lint of ``migrations/<dialect>/``.

The runner (:func:`polylogue.storage.migration_scripts.discover`) stops at the first bad
name or gap; this lists them all, and lints each script with sqlfluff under the
repository's ``.sqlfluff`` files, as findings with file and line. sqlfluff takes about a
second a file, so its results are cached per file text (``~/.cache/polylogue``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

from polylogue.sqlcheck.contract import shown_path
from polylogue.sqlcheck.findings import Finding
from polylogue.storage.migration_scripts import _SCRIPT_NAME, discover

_SQLFLUFF_DIALECTS = {"sqlite": "sqlite", "duckdb": "duckdb", "postgresql": "postgres"}


def check_migrations(dialect: str, folder: Path, *, lint: bool = True) -> list[Finding]:
    """Bad names, duplicate numbers, gaps, and sqlfluff violations of ``folder``'s scripts."""
    findings: list[Finding] = []
    by_version: dict[int, Path] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _SCRIPT_NAME.fullmatch(path.name)
        if not match:
            findings.append(
                _finding(
                    dialect,
                    path,
                    1,
                    "is not named NNNN_short_slug.sql (four digits, lower-case slug):"
                    " rename it, or the runner refuses every migration",
                )
            )
            continue
        version = int(match["version"])
        if version in by_version:
            findings.append(
                _finding(
                    dialect,
                    path,
                    1,
                    f"version {version} is also {by_version[version].name}: give one of"
                    " them the next free number",
                )
            )
            continue
        by_version[version] = path
    versions = sorted(by_version)
    if versions:
        first = by_version[versions[0]]
        if versions[0] != 1 and not first.stem.split("_", 1)[1].startswith("baseline"):
            findings.append(
                _finding(
                    dialect,
                    first,
                    1,
                    "the history starts above version 1 without a NNNN_baseline*.sql script",
                )
            )
        for previous, version in itertools.pairwise(versions):
            if version != previous + 1:
                missing = ", ".join(f"{v:04d}" for v in range(previous + 1, version))
                findings.append(
                    _finding(
                        dialect,
                        by_version[version],
                        1,
                        f"no script for version {missing} before it: versions follow each"
                        " other without gaps",
                    )
                )
    if not findings:
        try:  # what the runner refuses beyond names (header directives)
            discover(dialect, folder)
        except Exception as exc:
            findings.append(_finding(dialect, folder, None, str(exc)))
    for path in sorted(by_version.values()):
        if not _has_statement(path):
            findings.append(
                _finding(
                    dialect,
                    path,
                    1,
                    "the script holds no statement yet (only comments): write this dialect's"
                    " part of the schema change, or remove the script from every dialect",
                )
            )
    if lint:
        for path in sorted(by_version.values()):
            findings.extend(lint_file(dialect, path))
    return findings


def _has_statement(path: Path) -> bool:
    """Whether the script holds anything but comments and blank lines."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        code = line.split("--", 1)[0].strip()
        if code and not code.startswith("/*"):
            return True
    return False


def _finding(dialect: str, path: Path, line: int | None, message: str) -> Finding:
    return Finding(
        check="migrations",
        severity="error",
        message=message,
        dialect=dialect,
        file=shown_path(path),
        line=line,
        name=path.stem if path.suffix == ".sql" else None,
    )


def lint_file(dialect: str, path: Path) -> list[Finding]:
    """sqlfluff's violations of one script, as findings (cached per text and config)."""
    text = path.read_text(encoding="utf-8")
    violations = _cached_lint(dialect, path, text)
    return [
        Finding(
            check="migrations",
            severity="error",
            message=f"sqlfluff {code}: {description} (fix it, or run sqlfluff fix {path.name})",
            dialect=dialect,
            file=shown_path(path),
            line=line,
            name=path.stem,
        )
        for code, line, description in violations
    ]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polylogue" / "sqlfluff"


def _configs(path: Path) -> str:
    """The text of every ``.sqlfluff`` from the script's folder up: part of the cache key."""
    texts = []
    for folder in [path.parent, *path.parents]:
        config = folder / ".sqlfluff"
        if config.is_file():
            texts.append(config.read_text(encoding="utf-8"))
    return "\n".join(texts)


def _cached_lint(dialect: str, path: Path, text: str) -> list[tuple[str, int, str]]:
    import sqlfluff

    key = hashlib.sha256(
        "\0".join((sqlfluff.__version__, dialect, _configs(path), text)).encode()
    ).hexdigest()
    cache = _cache_dir() / f"{key}.json"
    try:
        return [(str(c), int(n), str(d)) for c, n, d in json.loads(cache.read_text())]
    except (OSError, ValueError):
        pass
    violations = _lint(dialect, path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(violations))
    except OSError:
        pass  # a read-only home only costs the next run its time
    return violations


def _lint(dialect: str, path: Path) -> list[tuple[str, int, str]]:
    from sqlfluff.core import FluffConfig, Linter

    # From the script's folder up, as `sqlfluff lint` reads them; the dialect is forced
    # because an installed package ships no .sqlfluff files.
    config = FluffConfig.from_path(
        str(path.parent), overrides={"dialect": _SQLFLUFF_DIALECTS[dialect]}
    )
    linted = Linter(config=config).lint_paths((str(path),))
    found = []
    for record in linted.as_records():
        for violation in record["violations"]:
            found.append(
                (
                    str(violation["code"]),
                    int(str(violation["start_line_no"])),
                    str(violation["description"]),
                )
            )
    return found


__all__ = ["check_migrations", "lint_file"]
