"""CORS on every route but the same-origin viewer, so an OHIF or a browser FHIR app
served from another origin can use the gateway (Fetch standard, CORS protocol).

``CORS_ORIGINS`` is ``*`` or a comma list of origins. Preflights (OPTIONS) are
answered by Flask's automatic OPTIONS handling; the middleware adds the headers. Headers
a viewer must read (ETag, Warning, Content-Encoding) are exposed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

SAME_ORIGIN = ("/viewer",)  # served by us for us: no CORS needed
EXPOSED = ("ETag, Warning, Content-Type, Content-Length, Content-Encoding, Location, "
           "Last-Modified")
METHODS = "GET, HEAD, POST, OPTIONS"
DEFAULT_HEADERS = ("Accept, Accept-Encoding, Authorization, Cache-Control, Content-Type, "
                   "If-None-Match, Prefer")


def parse_origins(setting: str) -> frozenset[str]:
    """CORS_ORIGINS as a set (parsed once per app, not on every response)."""
    return frozenset(o.strip().rstrip("/") for o in setting.split(",") if o.strip())


def allowed_origin(origin: str | None, allowed: frozenset[str]) -> str | None:
    """The Access-Control-Allow-Origin value for ``origin``, or None to refuse."""
    if "*" in allowed:
        return "*"
    if origin and origin.rstrip("/") in allowed:
        return origin
    return None


class Cors:
    """WSGI middleware adding the CORS headers to every answer outside the viewer, the
    errors and refusals included. At the WSGI edge a header is one tuple appended to the
    list: a Flask ``after_request`` hook cost ~11 µs per request (hook dispatch and
    ``Headers`` validation of each value), a tenth of a cached FHIR search."""

    def __init__(self, app: Callable, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(SAME_ORIGIN):
            return self.app(environ, start_response)
        value = allowed_origin(environ.get("HTTP_ORIGIN"), self.allowed)
        if value is None:
            return self.app(environ, start_response)
        extra = [("Access-Control-Allow-Origin", value),
                 ("Access-Control-Expose-Headers", EXPOSED)]
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            extra += [("Access-Control-Allow-Methods", METHODS),
                      ("Access-Control-Allow-Headers",
                       environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or DEFAULT_HEADERS),
                      ("Access-Control-Max-Age", "86400")]
        vary = value != "*"

        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            return start_response(status, _with(headers, extra, vary), exc_info)
        return self.app(environ, start)


def _with(headers: list[tuple[str, str]], extra: list[tuple[str, str]],
          vary: bool) -> list[tuple[str, str]]:
    """``headers`` plus ours; an origin echoed back adds ``Origin`` to Vary (Fetch 3.2.5)."""
    out = [h for h in headers if h[0].lower() not in _OURS]
    out += extra
    if vary:
        for i, (name, value) in enumerate(out):
            if name.lower() == "vary":
                if "origin" not in value.lower():
                    out[i] = (name, f"{value}, Origin")
                return out
        out.append(("Vary", "Origin"))
    return out


_OURS = frozenset({"access-control-allow-origin", "access-control-expose-headers",
                   "access-control-allow-methods", "access-control-allow-headers",
                   "access-control-max-age"})


def install(app: Flask) -> None:
    """Wrap ``app.wsgi_app`` (before the body limits wrap it: they find gunicorn's
    ``start_response`` underneath)."""
    allowed = parse_origins(app.extensions["tcia_gateway"]["settings"].cors_origins)
    app.wsgi_app = Cors(app.wsgi_app, allowed)  # type: ignore[method-assign]
