"""Keeping secrets out of logs and answers: one redaction for every URL or DSN the project prints."""

from __future__ import annotations

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password, any userinfo that could be a token, and every query value replaced by ``***``.

    Handles ``scheme://user:password@host``, ``scheme://TOKEN@host`` (userinfo without a colon is kept only when
    the scheme is a database's, where it is a user name), ``?password=...`` and any other query parameter
    (``postgresql://u@h/db?password=p``, ``http://h/?api_key=k``), fragments, and strings that are not URLs at all
    (returned as they are, minus any query values). Never raises.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest, hash_sep, fragment = rest.partition("#")
    rest, query_sep, query = rest.partition("?")
    if sep:
        authority, slash, path = rest.partition("/")
        creds, at, host = authority.rpartition("@")
        if at:
            user, colon, _ = creds.partition(":")
            database = scheme.lower().startswith(("postgres", "mysql", "sqlite", "redis", "mongodb"))
            creds = f"{user}:{MASK}" if colon else (user if database else MASK)
            authority = f"{creds}@{host}"
        rest = authority + slash + path
    if query_sep:
        query = "&".join(f"{key}={MASK}" if eq else MASK
                         for key, eq, _ in (part.partition("=") for part in query.split("&")))
    out = (scheme + sep if sep else "") + rest + (query_sep + query) + (hash_sep + (MASK if fragment else ""))
    return out
