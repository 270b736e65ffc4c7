"""A patient-scoped view of the PACS backend (``RemoteArchive.scoped``).

A DIMSE PACS knows patients, not TCIA collections: a scope of patients is kept by sending
PatientID in every C-FIND identifier (a single patient: as the matching key, PS3.4 C.2.2.2.1)
and by keeping only answers whose PatientID the scope allows; a read first asks the PACS
(or the cache) whose the study, series or instance is, and what another patient holds
answers exactly like what the PACS does not hold. Collection scopes are refused when the
view is made (NotSupported): nothing in a C-FIND answer says which collection a study is in.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Protocol, Sequence

from pydicom.dataset import Dataset

from ...archive.errors import NotFound, NotSupported
from ...archive.files import Spool
from ...archive.local.archive import LocalArchive
from ...archive.protocol import (Archive, Level, Query, SearchResult, Source, StoredInstance,
                                 StoreResult, UidPath)
from ...archive.scope import Scope
from ...dimse.pool import Peer
from ...dimse.scu import Scu


class Remote(Protocol):
    """What the view needs of ``RemoteArchive``."""

    cache: LocalArchive
    scu: Scu
    peer: Peer

    def scoped(self, scope: Scope) -> Archive: ...
    def search(self, query: Query) -> SearchResult: ...
    def metadata(self, where: UidPath) -> bytes: ...
    def instances(self, where: UidPath) -> Iterator[StoredInstance]: ...
    def instance(self, where: UidPath) -> StoredInstance: ...
    def spool(self) -> Spool: ...
    def ping(self) -> None: ...

    def store(self, source: Source, *, expected_study: str | None = ..., move: bool = ...,
              scope: Scope = ...) -> StoreResult: ...

PATIENT_ID = "00100020"


def check_supported(scope: Scope) -> None:
    if scope.collections is not None or scope.hidden:
        raise NotSupported("collections cannot be kept apart on a DIMSE PACS backend (its "
                           "C-FIND answers do not say which collection a study is in); use "
                           "the embedded archive for /collections and restricted collections")


class ScopedRemote:
    """``RemoteArchive`` as a patient scope sees it."""

    def __init__(self, remote: Remote, scope: Scope) -> None:
        check_supported(scope)
        assert scope.patients is not None
        self.remote = remote
        self.scope = scope
        self.patients: frozenset[str] = scope.patients

    def scoped(self, scope: Scope) -> Archive:
        return self.remote.scoped(self.scope.narrow(scope))

    # ----------------------------------------------------------------- queries
    def search(self, query: Query) -> SearchResult:
        """The PACS's answer without paging, narrowed, then paged (offset, limit)."""
        asked = (query.filters.get("PatientID") or "").strip()
        if asked and "*" not in asked and "?" not in asked and asked not in self.patients:
            return SearchResult([])
        filters = dict(query.filters)
        if len(self.patients) == 1 and asked in ("", "*"):
            filters["PatientID"] = next(iter(self.patients))
        else:
            filters.setdefault("PatientID", "")  # returned, so the answers can be kept apart
        whole = self.remote.search(dataclasses.replace(query, filters=filters, limit=None,
                                                       offset=0))
        kept = [m for m in whole.matches if _patient(m) in self.patients]
        end = None if query.limit is None else query.offset + query.limit
        return SearchResult(kept[query.offset:end], truncated=end is not None and len(kept) > end)

    # -------------------------------------------------------------------- reads
    def _check(self, where: UidPath) -> None:
        """NotFound, in the words of an unknown UID, unless the scope's patient holds it."""
        try:
            next(iter(self.remote.cache.instances(where, self.scope)))
            return  # cached, and the cache knows whose it is
        except NotFound:
            pass
        if self._owner(where) not in self.patients:
            raise NotFound(_unknown(self.remote, where))

    def _owner(self, where: UidPath) -> str | None:
        ds = Dataset()
        ds.QueryRetrieveLevel = where.level.dimse
        ds.PatientID = ""
        ds.StudyInstanceUID = where.study or ""
        if where.level is not Level.STUDY:
            ds.SeriesInstanceUID = where.series or ""
        if where.level is Level.INSTANCE:
            ds.SOPInstanceUID = where.instance or ""
        found = self.remote.scu.find(ds)
        return str(found[0].get("PatientID", "")) if found else None

    def metadata(self, where: UidPath) -> bytes:
        self._check(where)
        return self.remote.metadata(where)

    def instances(self, where: UidPath) -> Iterator[StoredInstance]:
        self._check(where)
        return self.remote.instances(where)

    def instance(self, where: UidPath) -> StoredInstance:
        self._check(where)
        return self.remote.instance(where)

    # ------------------------------------------------------------------- writes
    def spool(self) -> Spool:
        return self.remote.spool()

    def store(self, source: Source, *, expected_study: str | None = None,
              move: bool = False) -> StoreResult:
        return self.remote.store(source, expected_study=expected_study, move=move,
                                 scope=self.scope)

    def store_batch(self, sources: Sequence[Source], *, expected_study: str | None = None,
                    move: bool = False) -> list[StoreResult]:
        return [self.store(s, expected_study=expected_study, move=move) for s in sources]

    def collections(self) -> dict[str, dict[str, int]]:
        """A DIMSE PACS does not say which collection a study is in."""
        return {}

    def has_collection(self, name: str) -> bool:
        return False

    def study_collections(self, study_uids: Sequence[str]) -> dict[str, str]:
        return {}

    def materialize(self, where: UidPath) -> None:
        """Nothing to do ahead: a retrieve fills the pull-through cache as it goes."""

    def ping(self) -> None:
        self.remote.ping()

    def close(self) -> None:
        """The backend belongs to the app, not to the view."""


def _patient(match: dict) -> str:
    values = match.get(PATIENT_ID, {}).get("Value") or [""]
    return str(values[0])


def _unknown(remote: Remote, where: UidPath) -> str:
    parts = [f"{name} {uid}" for name, uid in (("study", where.study), ("series", where.series),
                                               ("instance", where.instance)) if uid]
    return f"PACS {remote.peer} has no " + ", ".join(parts)
