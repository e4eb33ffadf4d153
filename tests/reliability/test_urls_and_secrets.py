"""PostgreSQL URLs: options reach the server as written, passwords are never shown.

Options with spaces (``?options=-c synchronous_commit=off``, ``application_name=my%20app``)
are checked on a pooled connection of a real server. Passwords with special characters
are read one way only or refused: a URL that libpq and Python would read differently is
a ConfigurationError that shows nothing of it but the scheme, and a well-formed one
never shows its password in ``describe()``, ``backend.url``, ``repr`` of the config or
the backend, validation errors, driver errors, the exception chain or the command's
output.
"""

# ruff: noqa: E402 (the imports below need psycopg, checked first)
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
from click.testing import CliRunner
from pydantic import ValidationError

from polylogue.cli import main
from polylogue.errors import ConfigurationError, DatabaseError, OperationalError
from polylogue.storage.backends import BackendConfig, create_backend, parse_url, redact_url
from polylogue.storage.backends.postgresql.backend import PostgresBackend
from polylogue.storage.backends.postgresql.url import ENCODE_HINT
from tests.records import message
from tests.support_postgres import (
    fresh_schema,
    role_with_password,
    server_url,
)


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def everything_said(exc: BaseException | None) -> str:
    """Messages and notes of an exception and of every exception chained to it."""
    said = []
    while exc is not None:
        said.append(f"{type(exc).__name__}: {exc}")
        said.extend(getattr(exc, "__notes__", []))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(said)


def pooled_setting(backend: Any, name: str) -> str:
    with backend._reading("test") as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
    return str(next(iter(row.values())))


# -- defect 6: options with spaces ----------------------------------------------------------


def test_options_with_spaces_reach_the_server_as_written(schema: str) -> None:
    # The README's own form (raw spaces), a %20, and a '+' (libpq takes it literally).
    url = (
        f"{server_url()}?schema={schema}&options=-c synchronous_commit=off"
        " -c statement_timeout=4321&application_name=my%20app+1"
    )
    with create_backend(url) as backend:
        assert pooled_setting(backend, "synchronous_commit") == "off"
        assert pooled_setting(backend, "statement_timeout") == "4321ms"
        assert pooled_setting(backend, "application_name") == "my app+1"
        assert pooled_setting(backend, "search_path") == f'"{schema}"'
        assert backend.schema_version() == backend.migration_runner().target_version
    config = parse_url(url)
    assert config.url is not None and "+" not in config.url.replace("app%2B1", "")


# -- defect 8: passwords with special characters --------------------------------------------

AMBIGUOUS = {
    # url: fragments of its password that must never be shown
    "postgresql://u:p@ss:w/o?rd#1@host/db": ["ss:w", "o?rd", "rd#1", "#1@"],
    "postgresql://u:Qx7/Vb8@host/db": ["Qx7", "Vb8"],
    "postgresql://u:Qx7?Vb8@host/db": ["Qx7", "Vb8"],
    "postgresql://u:4711/Vb8@host/db": ["4711", "Vb8"],
    "postgresql://u:Qx7#Vb8@host/db": ["Qx7", "Vb8"],
    "postgresql://u:pw-Kd9@[::1/db": ["pw-Kd9"],
}


@pytest.mark.parametrize("url", list(AMBIGUOUS))
def test_urls_read_two_ways_are_refused_without_showing_the_password(url: str) -> None:
    secrets = AMBIGUOUS[url]
    attempts = [
        lambda: parse_url(url),
        lambda: create_backend(url),
        lambda: BackendConfig(backend_type="postgresql", url=url),
        lambda: PostgresBackend(url),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as refused:
            attempt()
        said = everything_said(refused.value)
        assert ENCODE_HINT in str(refused.value) and "\n" not in str(refused.value)
        for secret in secrets:
            assert secret not in said, (secret, said)
    shown = redact_url(url)
    assert shown.startswith("postgresql://") and not any(s in shown for s in secrets)
    result = CliRunner().invoke(main, ["status", "--url", url])
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "percent-encode" in result.stderr
    assert not any(secret in result.output for secret in secrets)


def test_an_at_sign_in_the_password_is_read_as_python_reads_it() -> None:
    config = parse_url("postgresql://me:Kd9@Zr4@db.example:5433/archive?schema=s&sslmode=require")
    assert config.url == "postgresql://me:Kd9%40Zr4@db.example:5433/archive?sslmode=require"
    assert config.schema_name == "s"
    assert redact_url(config.url) == "postgresql://me:***@db.example:5433/archive?sslmode=require"


def test_config_repr_and_validation_errors_hide_the_password() -> None:
    url = "postgresql://me:Kd9%40Zr4@db.example/archive?password=Yq2Wx5"
    config = parse_url(url)
    for text in (repr(config), str(config)):
        assert "Kd9" not in text and "Yq2Wx5" not in text and "me:***@db.example" in text
    with pytest.raises(ValidationError) as invalid:
        BackendConfig.model_validate(url)
    with pytest.raises(ValidationError) as bad_field:
        BackendConfig(backend_type="postgresql", url=url, pool_max_size="many")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError) as bad_option:
        parse_url(url + "&pool_max_size=many")
    for failure in (invalid.value, bad_field.value, bad_option.value):
        said = everything_said(failure)
        assert "Kd9" not in said and "Yq2Wx5" not in said
    assert "\n" not in str(bad_option.value) and "pool_max_size" in str(bad_option.value)


@pytest.fixture
def password_role() -> Iterator[tuple[str, str]]:
    """A role whose password is full of URL delimiters (see ``role_with_password``)."""
    with role_with_password(f"Kd9@Zr4:w/o?rd#1%20 {uuid.uuid4().hex[:6]}") as made:
        yield made


def test_a_password_full_of_delimiters_logs_in_and_is_never_shown(
    password_role: tuple[str, str], schema: str
) -> None:
    role, password = password_role
    with psycopg.connect(server_url()) as conn:
        where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    spellings = {password, quote(password, safe=""), quote(password), "Kd9", "Zr4", "o?rd"}
    url = f"postgresql://{role}:{quote(password, safe='')}@{where}?schema={schema}"
    with create_backend(url) as backend:
        assert isinstance(backend, PostgresBackend)
        shown = [backend.describe(), backend.url, repr(backend)]
        assert all(f"{role}:***@" in text for text in shown)
        with pytest.raises(DatabaseError) as failed:
            backend.save_messages([message("m1", "no-such-conversation")])
        shown.append(everything_said(failed.value))
        assert "postgresql://" in str(failed.value)  # other text is not scrubbed away
        # A server message that quotes the password: scrubbed, down the whole chain.
        with pytest.raises(DatabaseError) as quoted, backend._reading("probe") as conn:
            conn.execute("SELECT CAST(%s AS integer)", (password,))
        assert "invalid input syntax" in str(quoted.value) and "***" in str(quoted.value)
        shown.append(everything_said(quoted.value))
    for command in (["status", "--url", url], ["stats", "--url", url]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
        shown.append(result.output)
    wrong = url.replace("Kd9", "Kd8")
    with pytest.raises(OperationalError) as refused:
        create_backend(wrong)
    said = everything_said(refused.value)
    assert "password authentication failed" in said and "\n" not in str(refused.value)
    shown.append(said)
    for text in shown:
        for secret in spellings | {"Kd8"}:
            assert secret not in text, (secret, text)
