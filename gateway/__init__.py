"""tcia-gateway: DICOMweb, DIMSE and FHIR R4 in front of a TCIA-style imaging archive."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import FunctionType
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from .archive import Archive
from .backends import open_archive
from .config import Settings
from .version import __version__

__all__ = ["EXTENSION", "__version__", "close_app", "create_app"]
EXTENSION = "tcia_gateway"


class GatewayFlask(Flask):
    """Flask, with the per-call coroutine check of every view and hook decided once per
    function (Flask documents ``ensure_sync`` as the method to override): no view or hook
    here is ``async``, and ``inspect`` cost ~1.5 µs per call, several calls per request."""

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:  # bound methods, partials: as Flask does
            return super().ensure_sync(func)
        known = self._sync.get(func)
        if known is None:
            known = self._sync[func] = super().ensure_sync(func)
        return known


def create_app(settings: Settings | None = None, *, archive: Archive | None = None) -> Flask:
    """The app factory: every collaborator comes from ``settings`` (or is injected by tests)."""
    settings = settings or Settings.load()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = GatewayFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # STOW enforces MAX_UPLOAD_BYTES while streaming
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    app.extensions[EXTENSION] = {"settings": settings,
                                 "archive": archive or open_archive(settings),
                                 "closers": []}  # what close_app releases besides the archive
    from . import cors, errors, guard, health, limits
    guard.install(app, settings)  # its WSGI edge innermost: headers before CORS adds its own
    cors.install(app)  # WSGI middleware, inside the body limits (limits.py)
    limits.install(app, settings)
    errors.register(app)
    app.register_blueprint(health.bp)
    for register in _feature_blueprints():
        register(app)
    return app


def close_app(app: Flask) -> None:
    """Release the app's archive (associations, threads, helper processes, connections) and
    the FHIR repository's connections; for an app that is not ours, nothing."""
    state = app.extensions.get(EXTENSION) if hasattr(app, "extensions") else None
    if state is None:
        return
    for closer in state.get("closers", []):
        try:
            closer()
        except Exception:  # the next closer must still run: the worker is exiting anyway
            logging.getLogger(__name__).exception("closing %r failed", closer)
    state["archive"].close()


def _feature_blueprints() -> Iterator[Callable[[Flask], None]]:
    """Protocol packages that are present register themselves (one blueprint each)."""
    import importlib
    for name in ("dicomweb", "fhir", "viewer", "cohorts", "home"):  # cohorts after fhir
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"{__name__}.{name}"):
                continue
            raise
        register = getattr(module, "register", None)
        if register:
            yield register
