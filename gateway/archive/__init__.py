"""The archive: one protocol, interchangeable backends (embedded or a remote PACS)."""
from __future__ import annotations

import logging

from ..config import Settings
from .errors import (ArchiveError, InvalidQuery, NotAcceptable, NotFound, Unavailable,
                     UpstreamError, UpstreamTimeout)
from .local import LocalArchive
from .protocol import (Archive, FailureReason, Level, Query, SearchResult, StoredInstance,
                       StoreOutcome, StoreResult, UidPath)

__all__ = ["Archive", "ArchiveError", "FailureReason", "InvalidQuery", "Level", "LocalArchive",
           "NotAcceptable", "NotFound", "Query", "SearchResult", "StoreOutcome", "StoreResult",
           "StoredInstance", "UidPath", "Unavailable", "UpstreamError", "UpstreamTimeout",
           "open_archive", "open_local"]


def open_local(settings: Settings, *, sweep: bool = True) -> LocalArchive:
    """The embedded archive under ``DATA_DIR`` (also the cache of a remote backend). On
    opening, temp files older than TEMP_MAX_AGE that nobody writes (a crash's) are removed."""
    archive = LocalArchive(settings.data_dir, settings.index_url,
                           duplicate_policy=settings.duplicate_policy)
    if sweep:
        try:
            removed = archive.files.clean_temp(settings.temp_max_age)
        except OSError as exc:  # a read-only data dir still serves reads
            logging.getLogger(__name__).warning("cannot sweep %s: %s", archive.files.tmp, exc)
        else:
            if removed:
                logging.getLogger(__name__).warning(
                    "removed %d temp file(s) older than TEMP_MAX_AGE=%gs from %s (left by a "
                    "crash)", removed, settings.temp_max_age, archive.files.tmp)
    return archive


def open_archive(settings: Settings) -> Archive:
    """The backend the settings ask for: the embedded archive, or a PACS in front of it."""
    if settings.pacs:
        from .remote import RemoteArchive  # arrives with the DIMSE backend
        return RemoteArchive(settings, cache=open_local(settings))
    return open_local(settings)
