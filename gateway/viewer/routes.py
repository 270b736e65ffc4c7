"""Serve the installed OHIF build at ``/viewer/`` (same origin as ``/dicomweb``).

- ``/viewer`` redirects (308, relative Location) to ``/viewer/``.
- ``/viewer/app-config.js`` is generated (``config.py``), never cached.
- Files get explicit content types (``application/wasm`` for the codecs, which
  ``WebAssembly.instantiateStreaming`` requires). Content-hashed names are immutable for
  a year; everything else revalidates (ETag) on every load, since OHIF's CSS chunks and
  assets carry no hash.
- Unknown paths fall back to ``index.html`` (OHIF's client-side routes such as
  ``/viewer/viewer?StudyInstanceUIDs=…``) unless they name a static file type: a missing
  chunk gets a real 404, not HTML the browser would try to run as script.
- Nothing is compressed per request. JS/CSS/JSON were gzipped once at install
  (``precompress.py``) and the ``.gz`` sibling goes to clients that accept gzip; the
  wasm codecs are sent as they are (no measurable gain, docs/viewer.md).
- Not installed: 404 saying how to install, as HTML for browsers, JSON otherwise.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from flask import Blueprint, Response, jsonify, redirect, request, send_file
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as BaseResponse

from .. import context
from . import MOUNT, NOT_INSTALLED, viewer_root
from .config import PROFILES, app_config_js

bp = Blueprint("viewer", __name__)

CONTENT_TYPES = {
    ".html": "text/html",       # werkzeug adds "; charset=utf-8" to text/* types
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".onnx": "application/octet-stream",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# rspack names: "app.bundle.0f6159c501addfe9.js", "0ddf166f7a343eda.wasm", "a34f…woff2"
_HASHED = re.compile(r"(?:^|\.)[0-9a-f]{16}\.(?:js|wasm|woff2|css)$")


@bp.get(MOUNT, strict_slashes=True)
def to_slash() -> BaseResponse:
    """``/viewer`` → ``/viewer/``, keeping the query string; relative so proxies keep their prefix."""
    query = request.query_string.decode("latin-1")
    return redirect(f"{MOUNT[1:]}/" + (f"?{query}" if query else ""), code=308)


@bp.get(MOUNT + "/", defaults={"path": ""})
@bp.get(MOUNT + "/<path:path>")
def serve(path: str) -> Response:
    root = viewer_root(context.settings())
    if not (root / "index.html").is_file():
        return _not_installed()
    if path == "app-config.js":
        return _app_config()
    target = _resolve(root, path) if path else root / "index.html"
    if target is None:
        if Path(path).suffix.lower() in CONTENT_TYPES:
            raise NotFound(f"{MOUNT}/{path} is not part of the installed viewer build")
        target = root / "index.html"   # a client-side route of the single-page app
    return _file_response(target)


def _resolve(root: Path, path: str) -> Path | None:
    """The file for ``path`` inside ``root``; None for dot-files, escapes and directories."""
    parts = PurePosixPath(path).parts
    if any(p.startswith(".") or p in ("", "..") or "\\" in p for p in parts):
        return None
    candidate = root.joinpath(*parts)
    try:
        candidate.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return candidate if candidate.is_file() else None


def _file_response(path: Path) -> Response:
    """The file, or its install-time ``.gz`` sibling when the client accepts gzip."""
    mimetype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    packed = path.with_name(path.name + ".gz")
    gzipped = request.accept_encodings["gzip"] > 0 and packed.is_file()
    response = send_file(packed if gzipped else path, mimetype=mimetype, conditional=True,
                         etag=True, max_age=None)
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    if packed.is_file():
        response.vary.add("Accept-Encoding")
    response.headers["Cache-Control"] = IMMUTABLE if _HASHED.search(path.name) else REVALIDATE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _app_config() -> Response:
    """The generated config; ``?profile=conservative`` serves the other sites' settings."""
    profile = request.args.get("profile", "gateway")
    if profile not in PROFILES:
        raise NotFound(f"unknown viewer profile {profile!r}; expected one of {', '.join(PROFILES)}")
    held = sorted(context.archive().collections())  # one data source per collection root
    response = Response(app_config_js(profile, held), mimetype=CONTENT_TYPES[".js"])
    response.headers["Cache-Control"] = REVALIDATE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Viewer not installed</title></head><body style="font-family:sans-serif;margin:3em">
<h1>Viewer not installed</h1>
<p>The OHIF viewer is not installed on this gateway. Run:</p>
<pre>tcia-gateway viewer install</pre>
<p>(it fetches <code>@ohif/app</code> with npm into <code>DATA_DIR/viewer</code>;
<code>--from-tarball PATH</code> installs offline). DICOMweb stays available at
<a href="/dicomweb/studies">/dicomweb</a>.</p></body></html>
"""


def _not_installed() -> Response:
    """404 that tells the operator what to run, in the form the client reads."""
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        response = Response(_PAGE, 404, mimetype=CONTENT_TYPES[".html"])
    else:
        response = jsonify(status=404, error="Not Found", message=NOT_INSTALLED)
        response.status_code = 404
    response.headers["Cache-Control"] = "no-store"
    return response
