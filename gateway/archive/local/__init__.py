"""The embedded archive: an index database and a file store under ``DATA_DIR``."""
from __future__ import annotations

import logging

from ...config import Settings
from .archive import LocalArchive, Prepared, prepare_received

__all__ = ["LocalArchive", "Prepared", "open_local", "prepare_received"]
log = logging.getLogger(__name__)


def open_local(settings: Settings, *, sweep: bool = True) -> LocalArchive:
    """The embedded archive under ``DATA_DIR`` (also the cache of the PACS backend). On
    opening, temp files older than TEMP_MAX_AGE (a crash's leftovers) are removed."""
    archive = LocalArchive(settings.data_dir, settings.index_url,
                           duplicate_policy=settings.duplicate_policy,
                           metadata_cache_bytes=settings.metadata_cache_bytes)
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
