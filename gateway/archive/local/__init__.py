"""The embedded archive: an index database and a file store under ``DATA_DIR``."""
from __future__ import annotations

import logging
import threading

from pathlib import Path
from typing import Any, Callable

from sqlalchemy.exc import SQLAlchemyError

from ...config import Settings, SettingsError
from .archive import LocalArchive, Prepared, prepare_received
from .index import Index
from .shared import record_store, recorded_store
from .store import FileStore

__all__ = ["LocalArchive", "Prepared", "open_local", "prepare_received"]
log = logging.getLogger(__name__)


def open_local(settings: Settings, *, sweep: bool = True) -> LocalArchive:
    """The embedded archive under ``DATA_DIR`` (also the cache of the PACS backend). On
    opening, temp files older than TEMP_MAX_AGE (a crash's leftovers) are removed."""
    index = Index(settings.index_url)
    archive = LocalArchive(settings.data_dir, settings.index_url,
                           duplicate_policy=settings.duplicate_policy,
                           metadata_cache_bytes=settings.metadata_cache_bytes, index=index,
                           objects=_object_store(settings, index),
                           files_dir=_files_dir(settings.store_url))
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
        if archive.object_store:
            threading.Thread(target=_sweep_orphans, args=(archive, settings.s3_orphan_grace),
                             name="orphan-sweeper", daemon=True).start()
    return archive


def _sweep_orphans(archive: LocalArchive, grace: float) -> None:
    """Objects a dead node left between its PUT and its commit, older than the grace
    period: removed in the background (one prefix per archive: another index's objects
    under the same prefix would look like orphans)."""
    try:
        removed = archive.sweep_orphans(grace)
    except Exception as exc:  # the store or the index not up: the next start sweeps
        log.warning("orphan sweep skipped: %s", exc)
        return
    if removed:
        log.warning("removed %d object(s) no index row points at, older than "
                    "S3_ORPHAN_GRACE=%gs", removed, grace)


def _files_dir(url: str) -> Path | None:
    """STORE_URL=file:///PATH: the files there instead of DATA_DIR/files."""
    if url.startswith("file://") and url[len("file://"):].strip("/"):
        return Path(url[len("file://"):])
    return None


def _object_store(settings: Settings, index: Index) -> Callable[[FileStore], Any] | None:
    """STORE_URL=s3://...: the object store over the local spool; file:// or empty: None.
    The first s3:// URL an index is opened with is recorded in it: opened later without
    STORE_URL (a copy, a command) it finds its bucket; with another URL it refuses."""
    url = settings.store_url
    if url and not url.startswith(("file://", "s3://")):
        raise SettingsError(f"GATEWAY_STORE_URL={url!r}: expected file://PATH or "
                            "s3://bucket/prefix")
    try:
        recorded = recorded_store(index.engine)
        if url.startswith("s3://") and not recorded:
            recorded = record_store(index.engine, url)
    except SQLAlchemyError as exc:  # the index is not up yet: what the settings say
        log.warning("cannot read the recorded STORE_URL: %s", exc.__class__.__name__)
        recorded = url if url.startswith("s3://") else ""
    if url and recorded and url.rstrip("/") != recorded.rstrip("/"):
        raise SettingsError(f"GATEWAY_STORE_URL={url!r}, but this index's files are in "
                            f"{recorded!r}")
    if not recorded:
        return None
    from ..s3 import open_s3
    store_settings = settings.replace(store_url=recorded)
    return lambda local: open_s3(store_settings, local)
