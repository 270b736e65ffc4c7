"""Liveness and readiness probes (k8s style)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from . import context
from .archive import ArchiveError

bp = Blueprint("health", __name__)


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
