"""The archive: one protocol, interchangeable backends (embedded or a remote PACS)."""
from __future__ import annotations

from ..config import Settings
from .errors import (ArchiveError, InvalidQuery, NotAcceptable, NotFound, Unavailable,
                     UpstreamError, UpstreamTimeout)
from .local.archive import LocalArchive
from .protocol import (Archive, FailureReason, Level, Query, SearchResult, StoredInstance,
                       StoreOutcome, StoreResult, UidPath)

__all__ = ["Archive", "ArchiveError", "FailureReason", "InvalidQuery", "Level", "LocalArchive",
           "NotAcceptable", "NotFound", "Query", "SearchResult", "StoreOutcome", "StoreResult",
           "StoredInstance", "UidPath", "Unavailable", "UpstreamError", "UpstreamTimeout",
           "open_archive", "open_local"]


def open_local(settings: Settings) -> LocalArchive:
    """The embedded archive under ``DATA_DIR`` (also the cache of a remote backend)."""
    return LocalArchive(settings.data_dir, settings.index_url,
                        duplicate_policy=settings.duplicate_policy)


def open_archive(settings: Settings) -> Archive:
    """The backend the settings ask for: the embedded archive, or a PACS in front of it."""
    if settings.pacs:
        from ..backends.pacs.archive import RemoteArchive  # arrives with the DIMSE backend
        return RemoteArchive(settings, cache=open_local(settings))
    return open_local(settings)
