"""gunicorn's access log without tokens: an `access_token` in a query string (which the
gateway refuses, RFC 6750 2.3, but a client may still send) is replaced by `[redacted]` in
the request line and the query atoms before the line is written. The Authorization header
is never part of the log format."""
from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from ..audit.events import redact_query


class RedactingLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "q"):
            value = atoms.get(key)
            if isinstance(value, str) and ("token" in value.lower() or "%" in value):
                atoms[key] = redact(str(value))
        return atoms


def redact(text: str) -> str:
    """The request line or query with every access_token value redacted."""
    head, sep, rest = text.partition("?")
    if not sep:
        head, rest = "", text
    query, space, tail = rest.partition(" ")
    clean = redact_query(query.encode("latin-1", "replace")).decode("latin-1")
    return f"{head}{sep}{clean}{space}{tail}"
