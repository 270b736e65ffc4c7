"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS, WADO-URI) over the Archive protocol.

``register(app)`` adds the ``/dicomweb`` and ``/wado`` blueprints, ``/openapi.json``,
and the family's error handler (see docs/dicomweb.md); CORS is app-wide (gateway/cors.py).
"""
from __future__ import annotations

from flask import Flask

from . import openapi, roots, routes, wado_uri
from .caches import EXTENSION, Caches


def register(app: Flask) -> None:
    """Called by ``gateway.create_app``; blueprints carry their own error handlers."""
    app.extensions[EXTENSION] = Caches.from_settings(app.extensions["tcia_gateway"]["settings"])
    for bp in (routes.bp, wado_uri.bp):
        app.register_blueprint(bp)
    roots.register(app, routes.bp)
    app.register_blueprint(openapi.bp)
