"""tcia-gateway: DICOMweb, DIMSE and FHIR R4 in front of a TCIA-style imaging archive."""
from __future__ import annotations

import logging

from flask import Flask

from .archive import Archive, open_archive
from .config import Settings

__version__ = "0.1.0"
EXTENSION = "tcia_gateway"


def create_app(settings: Settings | None = None, *, archive: Archive | None = None) -> Flask:
    """The app factory: every collaborator comes from ``settings`` (or is injected by tests)."""
    settings = settings or Settings.load()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # STOW enforces MAX_UPLOAD_BYTES while streaming
    app.json.sort_keys = False
    app.extensions[EXTENSION] = {"settings": settings,
                                 "archive": archive or open_archive(settings)}
    from . import cors, errors, health, limits
    limits.install(app, settings)
    errors.register(app)
    cors.install(app)
    app.register_blueprint(health.bp)
    for register in _feature_blueprints():
        register(app)
    return app


def _feature_blueprints():
    """Protocol packages that are present register themselves (one blueprint each)."""
    import importlib
    for name in ("dicomweb", "fhir", "viewer"):
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"{__name__}.{name}"):
                continue
            raise
        register = getattr(module, "register", None)
        if register:
            yield register
