"""Access to the app's injected collaborators from inside a request."""
from __future__ import annotations

from flask import current_app

from .archive import Archive
from .config import Settings


def settings() -> Settings:
    return current_app.extensions["tcia_gateway"]["settings"]


def archive() -> Archive:
    return current_app.extensions["tcia_gateway"]["archive"]
