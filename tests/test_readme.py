"""The README's code works as printed: its Python blocks and its Quickstart command.

Every fenced ``python`` block of README.md runs, in README order, in one fresh Python
process whose working directory is an empty temporary folder and whose ``HOME`` and
``XDG_DATA_HOME`` lie inside it (``POLYLOGUE_DATABASE_URL`` unset), so the examples' files
land there and nothing of the real user's is read or written. Later blocks see the names
earlier ones defined, as a reader who pastes them in order does. A failure names the
block (its number, README line and first line of code) and the error, with a traceback
pointing at README lines. An assignment followed at once by a comment that is a Python
literal (``counts = ...`` then ``# {'conversations': 1, ...}``) is checked: the value must
equal the literal.

PostgreSQL blocks run for real against the test server (``tests/support_postgres.py``).
Without a reachable server the whole test skips, since later blocks may rely on earlier
ones; under ``CI=true`` that is a failure instead. The README keeps readable placeholders,
and the test replaces them before running, each a literal listed in ``PG_PLACEHOLDER_*``:
the URL ``postgresql://me:secret@db.example/archive`` becomes the test server's URL, the
key=value string ``host=db.example dbname=archive user=me`` the same server in that
spelling, and the schema name ``polylogue`` (as ``schema=polylogue``,
``schema_name="polylogue"`` and ``schema="polylogue"``) a fresh schema dropped afterwards.
This was chosen over reading the URL from an environment variable in the README, which
would make every reader's copy carry test plumbing. A block that still names
``db.example`` after the replacement fails the test instead of timing out on DNS.

The Quickstart test runs the command the README shows after its install step with the
venv's ``polylogue`` entry point (no reinstall), and checks that the install and test
commands are the ones ``.ci/run`` runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support_postgres import fresh_schema, require_server

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

PG_PLACEHOLDER_URL = "postgresql://me:secret@db.example/archive"
PG_PLACEHOLDER_CONNINFO = "host=db.example dbname=archive user=me"
PG_PLACEHOLDER_SCHEMA = "polylogue"
PG_SCHEMA_SPELLINGS = ("schema={}", 'schema_name="{}"', 'schema="{}"')
"""What the README writes for a PostgreSQL server and schema; the test substitutes each."""

INSTALL_STEP = "pip install -e '.[dev]' && "
"""What precedes the Quickstart's import-and-stats command in the README."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    number: int
    """1-based, among the README's blocks of the same language."""
    line: int
    """README line of the block's first line (the one after the opening fence)."""
    code: str

    @property
    def first_line(self) -> str:
        lines = [line.strip() for line in self.code.splitlines()]
        code = [line for line in lines if line and not line.startswith("#")]
        return (code or [""])[0]

    def where(self) -> str:
        return f"README block {self.number} (README.md line {self.line}: {self.first_line!r})"


def fenced_blocks(text: str, language: str) -> list[Block]:
    """The README's ```` ```language ```` blocks in order (fences at the start of a line)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].rstrip() == f"```{language}":
            start = index + 1
            end = start
            while end < len(lines) and lines[end].rstrip() != "```":
                end += 1
            if end == len(lines):
                raise AssertionError(f"README.md line {index + 1}: ```{language} is never closed")
            code = "\n".join(lines[start:end]) + "\n"
            blocks.append(Block(number=len(blocks) + 1, line=start + 1, code=code))
            index = end
        index += 1
    return blocks


def check_expectation(name: str, value: object, expected: object, where: str) -> None:
    """Called by a README block where a comment shows what ``name`` holds."""
    if value != expected:
        raise AssertionError(f"{name} is {value!r}, but the comment at {where} says {expected!r}")


def with_expectations(tree: ast.Module, lines: list[str], readme: str) -> ast.Module:
    """``tree`` with a check after each ``name = ...`` whose next lines are a literal comment."""
    body: list[ast.stmt] = []
    for stmt in tree.body:
        body.append(stmt)
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.end_lineno is not None
        ):
            continue
        name = stmt.targets[0].id
        comment: list[str] = []
        index = stmt.end_lineno  # 0-based: the line after the statement
        while index < len(lines) and lines[index].lstrip().startswith("#"):
            comment.append(lines[index].lstrip()[1:].strip())
            index += 1
        try:
            expected = ast.literal_eval(" ".join(comment))
        except (SyntaxError, ValueError):
            continue  # prose, not a value
        where = f"{readme}:{stmt.end_lineno + 1}"
        check = ast.parse(f"{CHECK}({name!r}, {name}, {expected!r}, {where!r})").body[0]
        body.append(ast.fix_missing_locations(ast.copy_location(check, stmt)))
    tree.body = body
    return tree


CHECK = "__readme_check__"


def run_blocks_from_stdin() -> None:
    """The subprocess's side: run ``[readme, [block, ...]]`` from stdin in one namespace."""
    readme, blocks = json.load(sys.stdin)
    namespace: dict[str, object] = {"__name__": "__main__", CHECK: check_expectation}
    for block in blocks:
        print(f"== README block {block['number']} (line {block['line']})", file=sys.stderr)
        try:
            # Blank lines in front, so that tracebacks give README line numbers.
            lines = [""] * (block["line"] - 1) + block["code"].splitlines()
            tree = with_expectations(ast.parse("\n".join(lines), readme), lines, readme)
            exec(compile(tree, readme, "exec"), namespace)
        except BaseException:
            print(f"FAILED: {block['where']}", file=sys.stderr)
            traceback.print_exc()
            sys.exit(1)
    print("all README blocks ran", file=sys.stderr)


DRIVER = "import tests.test_readme as t; t.run_blocks_from_stdin()"
"""The blocks' process: a fresh interpreter whose README namespace starts empty."""


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The environment with HOME and XDG_DATA_HOME inside ``tmp_path`` and no database URL."""
    env = dict(os.environ)
    env.pop("POLYLOGUE_DATABASE_URL", None)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    (tmp_path / "home").mkdir()
    # The checkout must be importable from the temporary folder, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def postgres_replacements(server: str, schema: str) -> dict[str, str]:
    """The README's placeholders mapped to the test server and ``schema``."""
    parts = urlsplit(server)
    if parts.query or parts.fragment:
        raise AssertionError(
            "tests/test_readme.py: the test server URL must have no ?options (the README"
            " appends its own): set POLYLOGUE_TEST_POSTGRES_URL without them"
        )
    conninfo = {
        "host": parts.hostname or "",
        "port": str(parts.port or ""),
        "dbname": parts.path.lstrip("/"),
        "user": parts.username or "",
        "password": parts.password or "",
    }
    return {
        PG_PLACEHOLDER_URL: server,
        PG_PLACEHOLDER_CONNINFO: " ".join(f"{k}={v}" for k, v in conninfo.items() if v),
        **{
            spelling.format(PG_PLACEHOLDER_SCHEMA): spelling.format(schema)
            for spelling in PG_SCHEMA_SPELLINGS
        },
    }


def substitute(blocks: list[Block], replacements: dict[str, str]) -> list[Block]:
    """``blocks`` with every placeholder replaced; each one must occur somewhere."""
    joined = "".join(block.code for block in blocks)
    missing = [placeholder for placeholder in replacements if placeholder not in joined]
    assert not missing, (
        f"README.md no longer writes {missing} in a python block: update the PG_PLACEHOLDER_* in"
        " tests/test_readme.py to what it writes for a PostgreSQL server"
    )
    done = []
    for block in blocks:
        code = block.code
        for placeholder, value in replacements.items():
            code = code.replace(placeholder, value)
        if "db.example" in code:
            raise AssertionError(
                f"{block.where()} names db.example in a way tests/test_readme.py does not"
                f" replace: write the server as {PG_PLACEHOLDER_URL!r} or"
                f" {PG_PLACEHOLDER_CONNINFO!r}"
            )
        done.append(Block(block.number, block.line, code))
    return done


def test_every_python_block_runs_in_order(tmp_path: Path) -> None:
    blocks = fenced_blocks(README.read_text(encoding="utf-8"), "python")
    assert len(blocks) >= 5, "README.md: expected its python examples, found almost none"
    server = require_server()
    with fresh_schema() as schema:
        runnable = substitute(blocks, postgres_replacements(server, schema))
        work = tmp_path / "work"
        work.mkdir()
        payload = [
            str(README),
            [
                {"number": b.number, "line": b.line, "code": b.code, "where": b.where()}
                for b in runnable
            ],
        ]
        result = subprocess.run(
            [sys.executable, "-c", DRIVER],
            input=json.dumps(payload),
            cwd=work,
            env=isolated_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        failed = re.search(r"^FAILED: (.*)$", result.stderr, re.MULTILINE)
        headline = failed.group(1) if failed else "the README blocks' process"
        pytest.fail(
            f"{headline} failed (exit {result.returncode}):\n{result.stderr[-6000:]}",
            pytrace=False,
        )
    assert "all README blocks ran" in result.stderr


def quickstart_sh_block(marker: str) -> str:
    """The README Quickstart's ```sh block that contains ``marker``."""
    text = README.read_text(encoding="utf-8")
    quickstart = text.split("## Quickstart", 1)[-1].split("\n## ", 1)[0]
    for block in fenced_blocks(quickstart, "sh"):
        if marker in block.code:
            return block.code.strip()
    raise AssertionError(
        f"README.md's Quickstart has no ```sh block containing {marker!r}: if the README"
        " changed it on purpose, change tests/test_readme.py to match"
    )


def quickstart_command() -> str:
    """The README Quickstart's import-and-stats command (what follows the install step)."""
    return quickstart_sh_block(INSTALL_STEP).split(INSTALL_STEP, 1)[1].strip()


def test_quickstart_import_and_stats_work_as_printed(tmp_path: Path) -> None:
    command = quickstart_command()
    entry_point = Path(sys.executable).with_name("polylogue")
    assert entry_point.exists(), f"{entry_point} missing: pip install -e '.[dev]' first"
    env = isolated_env(tmp_path)
    outputs = []
    for step in command.split(" && "):
        argv = shlex.split(step)
        assert argv[0] == "polylogue", f"README Quickstart: {step!r} is not a polylogue command"
        result = subprocess.run(
            [str(entry_point), *argv[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (
            f"README Quickstart step {step!r} exited {result.returncode}:\n{result.stderr}"
        )
        outputs.append(result.stdout)
    assert re.search(r"^total\s+36\s", outputs[-1], re.MULTILINE), (
        f"README Quickstart: {command!r} should end showing 36 conversations, got:\n{outputs[-1]}"
    )
    assert (tmp_path / "xdg" / "polylogue" / "polylogue.db").exists()


def _normalised(command: str) -> list[str]:
    """``command`` as words, without ``python -m`` in front and without ``-q``."""
    words = [word for word in shlex.split(command) if word != "-q"]
    return words[2:] if words[:2] == ["python", "-m"] else words


def test_quickstart_install_and_test_commands_are_what_ci_runs() -> None:
    install = INSTALL_STEP.removesuffix(" && ")
    quickstart_sh_block(INSTALL_STEP)
    test_command = quickstart_sh_block("pytest")
    ci_lines = [
        line.strip()
        for line in CI_RUN.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert test_command in ci_lines, f".ci/run does not run the README's {test_command!r}"
    assert any(_normalised(line) == _normalised(install) for line in ci_lines), (
        f".ci/run does not run the README's install command {install!r}"
        " (compared without 'python -m' and '-q')"
    )
