"""CORS on every route but the same-origin viewer, so an OHIF or a browser FHIR app
served from another origin can use the gateway (Fetch standard, CORS protocol).

``CORS_ORIGINS`` is ``*`` or a comma list of origins. Preflights (OPTIONS) are
answered by Flask's automatic OPTIONS handling; this hook adds the headers. Headers
a viewer must read (ETag, Warning, Content-Encoding) are exposed.
"""
from __future__ import annotations

from flask import Flask, Response, request

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


def install(app: Flask) -> None:
    """Add CORS headers to every response outside the viewer."""
    allowed = parse_origins(app.extensions["tcia_gateway"]["settings"].cors_origins)

    @app.after_request
    def _cors(response: Response) -> Response:
        if request.path.startswith(SAME_ORIGIN):
            return response
        value = allowed_origin(request.headers.get("Origin"), allowed)
        if value is None:
            return response
        response.headers["Access-Control-Allow-Origin"] = value
        if value != "*":
            response.vary.add("Origin")
        response.headers["Access-Control-Expose-Headers"] = EXPOSED
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = METHODS
            response.headers["Access-Control-Allow-Headers"] = (
                request.headers.get("Access-Control-Request-Headers") or DEFAULT_HEADERS)
            response.headers["Access-Control-Max-Age"] = "86400"
        return response
