"""The archive contract: one protocol every backend implements (``protocol``), the errors they
raise (``errors``), the attributes they index and match (``attributes``), the file store
interface (``files``) and DIMSE status codes (``status``). Backends: ``archive.local`` (the
embedded archive) and ``gateway.backends.pacs`` (a PACS in front of a local cache)."""
from __future__ import annotations

from .errors import (ArchiveError, Forbidden, InvalidQuery, NotAcceptable, NotFound,
                     NotSupported, Unavailable, UpstreamError, UpstreamTimeout)
from .protocol import (Archive, FailureReason, Level, Query, SearchResult, StoredInstance,
                       StoreOutcome, StoreResult, UidPath)

__all__ = ["Archive", "ArchiveError", "FailureReason", "Forbidden", "InvalidQuery", "Level", "NotAcceptable",
           "NotFound", "NotSupported", "Query", "SearchResult", "StoreOutcome", "StoreResult", "StoredInstance",
           "UidPath", "Unavailable", "UpstreamError", "UpstreamTimeout"]
