"""PostgreSQL URLs, read once and strictly, handed to libpq in one canonical spelling.

``postgresql://user:password@host:port/dbname?key=value&...``: user and password must
be percent-encoded where they hold ``@ : / ? # %``. When they are not, the URL means
different things to different readers: libpq ends the user part at the first ``@``,
Python's ``urllib`` at the last one before the first ``/``, ``?`` or ``#``, and either
may take part of the password for a host, a port, a database name or an option, which
then appears in messages (and every other spelling of it is missed by the scrubbing).
So this module:

- refuses a URL that cannot be read one way only, with a
  :class:`~polylogue.errors.ConfigurationError` that quotes nothing of it but the scheme
  (part of a password could be anywhere) and says to percent-encode: a ``#`` anywhere,
  an ``@`` after the host (in the database name or the options), a port that is not a
  number, brackets that do not close;
- otherwise rewrites it canonically: user, password, database name and every option
  value percent-encoded (a space as ``%20``: libpq decodes ``%XX`` but takes ``+``
  literally, so ``?options=-c synchronous_commit=off`` and ``application_name=my%20app``
  reach the server as written). An ``@`` inside the user part (before the last ``@`` of
  the host part) belongs to the user name or password, as Python reads it.

It needs no driver, so the URL is checked when it is parsed (``create_backend``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote, unquote

from polylogue.errors import ConfigurationError

POSTGRES_SCHEMES = ("postgresql", "postgres")
ENCODE_HINT = (
    "percent-encode special characters of the user name, password and options"
    " (@ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25, space as %20)"
)
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.%\w-]*\]|[^\[\]:,]*)(?::(?P<port>[^,]*))?")
"""One ``host[:port]`` (or ``[v6]:port``) of a libpq host list."""


@dataclass(frozen=True)
class PostgresURL:
    """The parts of a PostgreSQL URL, decoded."""

    scheme: str
    user: str | None
    password: str | None
    hosts: str
    """``host:port`` as written (libpq accepts a comma-separated list)."""
    dbname: str | None
    options: tuple[tuple[str, str], ...]

    def dsn(self, *, without: frozenset[str] = frozenset()) -> str:
        """The canonical URL for libpq, leaving out the options named in ``without``."""
        return self._build(self.password, without)

    def redacted(self) -> str:
        """The canonical URL with the password (and any ``password`` option) as ``***``."""
        return self._build(None if self.password is None else "***", frozenset(), redact=True)

    def _build(self, password: str | None, without: frozenset[str], redact: bool = False) -> str:
        userinfo = ""
        if self.user is not None or password is not None:
            userinfo = _encode(self.user or "")
            if password is not None:
                userinfo += ":" + (password if redact else _encode(password))
            userinfo += "@"
        path = "" if self.dbname is None else "/" + _encode(self.dbname)
        pairs = [
            f"{_encode(key)}={'***' if redact and key == 'password' else _encode(value)}"
            for key, value in self.options
            if key not in without
        ]
        query = "?" + "&".join(pairs) if pairs else ""
        return f"{self.scheme}://{userinfo}{self.hosts}{path}{query}"


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` starts with ``postgresql://`` or ``postgres://``."""
    scheme, sep, _rest = url.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def parse_postgres_url(url: str) -> PostgresURL:
    """Read ``url`` strictly (see the module docstring); raises ConfigurationError."""
    scheme, _sep, rest = url.partition("://")
    if "#" in rest:
        _refuse(scheme, "it holds a '#'")
    authority, slash, after = rest.partition("/")
    if "?" in authority:
        authority, _q, query = authority.partition("?")
        dbname = None
    else:
        path, _q, query = after.partition("?")
        dbname = unquote(path) if slash and path else None
    if "@" in query or (dbname is not None and "@" in after.partition("?")[0]):
        _refuse(scheme, "an '@' follows the host (in the database name or the options)")
    userinfo, at, hosts = authority.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user)
        password = unquote(raw_password) if colon else None
    for host in hosts.split(","):
        match = _HOST.fullmatch(host)
        if match is None:
            _refuse(scheme, "its host part is not host:port (a '[' without ']'?)")
        port = match["port"]
        if port is not None and port and not port.isdigit():
            _refuse(scheme, "its port is not a number")
    options: list[tuple[str, str]] = []
    for pair in query.split("&"):
        if not pair:
            continue
        key, _eq, value = pair.partition("=")
        # libpq decodes %XX only: a '+' is a plus sign, not a space.
        options.append((unquote(key), unquote(value)))
    return PostgresURL(scheme, user, password, hosts, dbname, tuple(options))


def redact_postgres_url(url: str) -> str:
    """``url`` for messages: the password as ``***``; an unreadable URL shows its scheme only."""
    try:
        return parse_postgres_url(url).redacted()
    except ConfigurationError:
        return f"{url.partition('://')[0]}://(not shown: it cannot be read one way only)"


def _refuse(scheme: str, why: str) -> NoReturn:
    raise ConfigurationError(
        f"cannot read this {scheme}:// URL (not shown, it may hold a password): {why};"
        f" {ENCODE_HINT}"
    )


def _encode(text: str) -> str:
    return quote(text, safe="")


__all__ = [
    "ENCODE_HINT",
    "POSTGRES_SCHEMES",
    "PostgresURL",
    "is_postgres_url",
    "parse_postgres_url",
    "redact_postgres_url",
]
