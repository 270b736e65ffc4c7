"""The embedded archive: an index database and a file store under ``DATA_DIR``."""
from __future__ import annotations

import logging

from typing import Any, Callable

from ...config import Settings, SettingsError
from .archive import LocalArchive, Prepared, prepare_received
from .store import FileStore

__all__ = ["LocalArchive", "Prepared", "open_local", "prepare_received"]
log = logging.getLogger(__name__)


def open_local(settings: Settings, *, sweep: bool = True) -> LocalArchive:
    """The embedded archive under ``DATA_DIR`` (also the cache of the PACS backend). On
    opening, temp files older than TEMP_MAX_AGE (a crash's leftovers) are removed."""
    archive = LocalArchive(settings.data_dir, settings.index_url,
                           duplicate_policy=settings.duplicate_policy,
                           metadata_cache_bytes=settings.metadata_cache_bytes,
                           objects=_object_store(settings))
    if sweep:
        try:
            removed = archive.files.sweep(settings.temp_max_age)
        except OSError as exc:  # a read-only data dir still serves reads
            log.warning("cannot sweep %s: %s", archive.files.tmp, exc)
        else:
            if removed:
                log.warning("removed %d temp file(s) older than TEMP_MAX_AGE=%gs from %s "
                            "(left by a crash)", removed, settings.temp_max_age,
                            archive.files.tmp)
    return archive


def _object_store(settings: Settings) -> Callable[[FileStore], Any] | None:
    """STORE_URL=s3://...: the object store over the local spool; file:// or empty: None."""
    if not settings.store_url.startswith("s3://"):
        if settings.store_url and not settings.store_url.startswith("file://"):
            raise SettingsError(f"GATEWAY_STORE_URL={settings.store_url!r}: expected "
                                "file://PATH or s3://bucket/prefix")
        return None
    from ..s3 import open_s3
    return lambda local: open_s3(settings, local)
