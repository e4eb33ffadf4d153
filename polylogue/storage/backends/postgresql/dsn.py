"""PostgreSQL connection strings: what polylogue adds to them, and where passwords hide.

A DSN is a URL (``postgresql://user:pw@host/db?sslmode=require``) or a libpq key=value
string (``host=db password=pw``); a URL is first read strictly and rewritten canonically
(:mod:`~polylogue.storage.backends.postgresql.url`: an ambiguous one is refused). The
backend adds ``search_path`` (its ``schema`` option,
quoted so that its case is kept) to libpq's ``options`` and sets ``application_name`` and
``connect_timeout`` unless given. A password can sit in the URL's user part, in a
``password=`` setting of either form, percent-encoded or not: :func:`redact_dsn` hides it
for display, and :func:`passwords_of` lists every spelling of it, so that a driver message
that quotes one can be scrubbed.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from polylogue.storage.backends.config import PASSWORD_SETTING, redact_url
from polylogue.storage.backends.postgresql.url import is_postgres_url, parse_postgres_url


def canonical_dsn(dsn: str) -> str:
    """A URL in its canonical spelling (ConfigurationError if ambiguous); other DSNs as given."""
    return parse_postgres_url(dsn).dsn() if is_postgres_url(dsn) else dsn


def connection_string(dsn: str, schema: str, *, connect_timeout: int) -> str:
    """The libpq connection string: ``dsn`` plus search_path and polylogue's defaults."""
    params = conninfo_to_dict(dsn)
    options = str(params.get("options") or "")
    params["options"] = f'{options} -c search_path="{schema}"'.strip()
    params.setdefault("application_name", "polylogue")
    params.setdefault("connect_timeout", connect_timeout)
    return make_conninfo("", **params)


def redact_dsn(dsn: str) -> str:
    """``dsn`` for messages: every password replaced by ``***``."""
    return redact_url(dsn)


def passwords_of(dsn: str) -> list[str]:
    """Every spelling in which the password of ``dsn`` could appear in a message."""
    found: set[str] = set()
    for match in PASSWORD_SETTING.finditer(dsn):
        value = match.group(2)
        found.update({value, value.strip("'"), unquote(value)})
    try:
        value = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:  # malformed: the settings found above are all there is
        value = None
    if value:
        found.add(str(value))
    if is_postgres_url(dsn):
        raw = parse_postgres_url(dsn).password
        if raw:
            found.update({raw, quote(raw, safe=""), quote(raw)})
    # Longest first, so that a password containing another spelling is replaced whole.
    return sorted((secret for secret in found if secret), key=len, reverse=True)
