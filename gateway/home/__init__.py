"""The home page at ``/``: what this archive holds, its service URLs and a cohort builder
(a static page over the JSON API of /cohorts; docs/cohorts.md)."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from . import iid, routes
    app.register_blueprint(routes.bp)
    app.register_blueprint(iid.bp)
