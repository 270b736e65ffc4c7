"""The bundled OHIF viewer, served same-origin at ``/viewer/`` (docs/viewer.md).

``tcia-gateway viewer install`` puts a rewritten copy of the published ``@ohif/app``
build in ``DATA_DIR/viewer``; the blueprint serves it with an ``app-config.js``
generated on each request, so the viewer always points at this gateway's own
``/dicomweb`` and ``/wado`` without a reinstall.
"""
from __future__ import annotations

from pathlib import Path

from flask import Flask

from ..config import Settings
from ..links import VIEWER_MOUNT as MOUNT

__all__ = ["MOUNT", "NOT_INSTALLED", "PREFIX", "is_installed", "register", "viewer_root"]
PREFIX = MOUNT + "/"        # the public path every absolute asset URL is rewritten to
NOT_INSTALLED = "viewer not installed: run `tcia-gateway viewer install`"


def viewer_root(settings: Settings) -> Path:
    """The install directory; ``index.html`` inside it means "installed" (see cli._viewer_hint)."""
    return settings.data_dir / "viewer"


def is_installed(settings: Settings) -> bool:
    return (viewer_root(settings) / "index.html").is_file()


def register(app: Flask) -> None:
    """Add the viewer blueprint (called by ``gateway.create_app``)."""
    from .routes import bp
    app.register_blueprint(bp)
