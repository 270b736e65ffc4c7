"""Liveness and readiness probes (k8s style)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from . import context
from .archive import ArchiveError

bp = Blueprint("health", __name__)
RETRY_AFTER = "5"  # seconds: a backend (index, object store, PACS) unavailable for now


@bp.after_app_request
def _retry_after(response: Response) -> Response:
    """Every 503 says when to come back (RFC 9110 10.2.3): the backends recover by
    themselves (a reconnect, the object store answering again), no restart needed."""
    if response.status_code == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = RETRY_AFTER
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """Readiness: the archive (index database, or the PACS) answers queries."""
    try:
        context.archive().ping()
    except ArchiveError as exc:
        return jsonify(status="unavailable", reason=exc.message), 503
    return jsonify(status="ready")
