"""``GET /``: the static home page (no build step; it asks /cohorts/facets and /home/summary)."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("home", __name__)
STATIC = Path(__file__).parent / "static"


@bp.get("/")
def index() -> Response:
    return Response((STATIC / "index.html").read_bytes(), content_type="text/html; charset=utf-8")
