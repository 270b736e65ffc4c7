"""The embedded archive: an index database and a file store under ``DATA_DIR``."""
from __future__ import annotations

from .archive import LocalArchive, Prepared, prepare_received

__all__ = ["LocalArchive", "Prepared", "prepare_received"]
