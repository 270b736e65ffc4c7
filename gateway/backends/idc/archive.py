"""IdcArchive: NCI Imaging Data Commons' public buckets behind the Archive protocol.

It is the embedded archive (so every face's searches, FHIR ImagingStudy's SQL, collections
and scopes work unchanged on it) whose index was loaded from IDC's series index
(:mod:`.catalog`). A read below series level (instances, metadata, frames, rendered,
retrieve, C-GET/C-MOVE, QIDO instances of a series) first makes sure each series it names
is in the cache: the series folder is listed and every object fetched (in parallel, each
call bounded) into the archive's store, parsed and indexed as an import or the PACS
cache does, then the series is marked fetched; a later read makes no bucket call.

A series enters the cache whole or not at all: its instances are indexed in one
transaction after every object arrived and parsed, so a missing object (502) or a bucket
that does not answer (503) leaves nothing behind. One retrieval per series: requests of
this process share a :class:`Flight`; processes and nodes take turns on the pull-through
cache's per-series lock (a PostgreSQL advisory lock, or a file lock on SQLite) and find the
series fetched when their turn comes.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, Callable, Iterator, TypeVar

from sqlalchemy import select, update

from ...archive.errors import ArchiveError, NotFound, NotSupported, Unavailable, UpstreamError
from ...archive.local.archive import LocalArchive, Prepared
from ...archive.local.schema import patients, studies
from ...archive.protocol import (FailureReason, Level, Query, SearchResult, StoredInstance,
                                UidPath)
from ...archive.scope import EVERYTHING, Scope
from ..pacs.preparepool import PreparePool
from ..pacs.pullthrough import Flight
from ..pacs.sharedstate import SharedCacheState
from .bucket import Bucket, BucketObject
from .catalog import idc_series
from .evict import Evictor

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_ONLY = ("BACKEND=idc is read-only: IDC's public bucket takes no uploads (store into a "
             "BACKEND=local archive instead)")


class IdcArchive(LocalArchive):
    """The embedded archive, filled series by series from the IDC bucket on first use."""

    bucket: Bucket

    def attach(self, bucket: Bucket, *, max_wait: float, evictor: Evictor | None = None) -> None:
        """Give the archive its bucket (after LocalArchive's own construction) and the
        bounded cache's evictor."""
        self.bucket, self.max_wait, self.evictor = bucket, max_wait, evictor
        # its lock: one fetch of a series at a time on every node (PostgreSQL advisory lock;
        # on SQLite, a file lock per series on this machine)
        self.state = SharedCacheState(self, Path(self.files.root) / "idc-cache")
        self._fetched: set[str] = set()
        self._flights: dict[str, Flight] = {}
        self._flights_lock = threading.Lock()
        # hash + fsync + parse of each object in helper processes, off this process's GIL,
        # as the PACS cache does (preparepool.py): a cold series is CPU-bound here, and
        # 8 fetch threads parsing in-process contended for the interpreter lock
        self.prepare_pool = PreparePool(workers=2)
        self.prepare_pool.warm()

    # ------------------------------------------------------------ reads that fetch
    def instances(self, where: UidPath, scope: Scope = EVERYTHING) -> Iterator[StoredInstance]:
        return self._read(lambda: super(IdcArchive, self).instances(where, scope), where, scope)

    def metadata(self, where: UidPath, scope: Scope = EVERYTHING) -> bytes:
        return self._read(lambda: super(IdcArchive, self).metadata(where, scope), where, scope)

    def _read(self, read: Callable[[], T], where: UidPath, scope: Scope) -> T:
        """``read()`` once the series under ``where`` are cached. This process remembers
        what it saw fetched; another process may have evicted it since: then a NotFound
        sends it to the index (and the bucket) once more."""
        self.ensure(where, scope)
        try:
            return read()
        except NotFound:
            if not (where.series and where.series in self._fetched):
                raise
        self._fetched.discard(where.series)
        self.ensure(where, scope)
        return read()

    def search(self, query: Query, scope: Scope = EVERYTHING) -> SearchResult:
        """Patient, study, series: from the index at once. Instances of a named series or
        study: that series (or study) fetched first."""
        if query.level is Level.INSTANCE:
            study = query.filters.get("StudyInstanceUID", "").strip()
            series = query.filters.get("SeriesInstanceUID", "").strip()
            if series and "\\" not in series or study and "\\" not in study and not series:
                self.ensure(UidPath(study or None, series or None), scope)
        return super().search(query, scope)

    # ------------------------------------------------------------ no writes
    # IDC's bucket is public and read-only, and the cache is evictable: an instance stored
    # here would be neither in IDC nor kept. STOW and C-STORE are refused before any byte
    # is spooled (DICOMweb 501 with the reason, DIMSE 0xC000; docs/idc.md).
    def spool(self) -> Any:
        raise NotSupported(READ_ONLY)

    def store(self, source: Any, **kwargs: Any) -> Any:
        raise NotSupported(READ_ONLY)

    def store_batch(self, sources: Any, **kwargs: Any) -> Any:
        raise NotSupported(READ_ONLY)

    def ping(self) -> None:
        """Ready: the index and cache store as the embedded archive, and the bucket answers."""
        super().ping()
        self.bucket.ping()

    def close(self) -> None:
        super().close()
        self.bucket.close()
        self.prepare_pool.close()

    # ------------------------------------------------------------------ fetching
    def ensure(self, where: UidPath, scope: Scope = EVERYTHING) -> None:
        """Every IDC series under ``where`` that ``scope`` sees, whole in the cache."""
        if not (where.study or where.series):
            return
        for uid, folder, expected in self._unfetched(where, scope):
            self._ensure_series(uid, folder, expected)

    def materialize(self, where: UidPath, scope: Scope = EVERYTHING) -> None:
        """A cohort download: its series fetched before the ZIP's layout is planned."""
        self.ensure(where, scope)

    def forget(self, uid: str) -> None:
        """``uid`` was evicted: the next read looks in the index again (and fetches)."""
        self._fetched.discard(uid)

    def _unfetched(self, where: UidPath, scope: Scope) -> list[tuple[str, str, int]]:
        if where.series and where.series in self._fetched:
            if self.evictor is not None:
                self.evictor.touch(where.series)
            return []
        stmt = (select(idc_series.c.series_uid, idc_series.c.folder, idc_series.c.instances,
                       idc_series.c.fetched, studies.c.collection, patients.c.patient_id)
                .join(studies, studies.c.study_uid == idc_series.c.study_uid)
                .join(patients, patients.c.pk == studies.c.patient_pk))
        if where.series:
            stmt = stmt.where(idc_series.c.series_uid == where.series)
        if where.study:
            stmt = stmt.where(idc_series.c.study_uid == where.study)
        with self.index.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for uid, folder, expected, fetched, collection, patient_id in rows:
            if fetched is not None:
                self._fetched.add(uid)
                if self.evictor is not None:
                    self.evictor.touch(uid)
            elif scope.unrestricted or (scope.sees_collection(collection)
                                        and scope.sees_patient(patient_id)):
                out.append((uid, folder, expected))
        return out

    def _ensure_series(self, uid: str, folder: str, expected: int) -> None:
        with self._flights_lock:
            flight = self._flights.get(uid)
            owner = flight is None
            if owner:
                flight = self._flights[uid] = Flight()
        assert flight is not None
        if owner:
            self._fly(flight, uid, folder, expected)
        else:
            flight.wait(lambda: False, timeout=self.max_wait, what=f"series {uid} from IDC")
        if flight.error is not None:
            raise copy.copy(flight.error)

    def _fly(self, flight: Flight, uid: str, folder: str, expected: int) -> None:
        error: ArchiveError | None = None
        try:
            with self.state.lock(uid, timeout=self.max_wait):
                if not self._is_fetched(uid):  # another process may have fetched it
                    self._fetch(uid, folder, expected)
            self._fetched.add(uid)
            if self.evictor is not None:
                self.evictor.evict(keep=uid)  # over the high watermark: LRU series go
        except ArchiveError as exc:
            error = exc
        except Exception as exc:  # never leave waiters hanging on an unexpected bug
            log.exception("fetching series %s from %s", uid, self.bucket.url)
            error = UpstreamError(f"fetching series {uid} from IDC failed: {exc}")
        finally:
            with self._flights_lock:
                self._flights.pop(uid, None)
            flight.finish(error)

    def _is_fetched(self, uid: str) -> bool:
        with self.index.engine.connect() as conn:
            return conn.execute(select(idc_series.c.fetched).where(
                idc_series.c.series_uid == uid)).scalar() is not None

    def _fetch(self, uid: str, folder: str, expected: int) -> None:
        """List the folder, fetch and parse every object, index them in one transaction.
        The folder must hold the index's instanceCount objects: fewer is a series with
        objects missing from the bucket (502), never cached in part."""
        started = time.monotonic()
        objects = [o for o in self.bucket.series_objects(folder) if not o.key.endswith("/")]
        if not objects or len(objects) < expected:
            raise UpstreamError(f"IDC bucket {self.bucket.url}: series {uid} has "
                                f"{len(objects)} of its {expected} objects in folder {folder}/ "
                                f"(objects missing)")
        spooled: list[tuple[Future[Any], Path]] = []
        prepared: list[Prepared] = []
        try:
            for item in self.bucket.map(self._receive, objects):
                spooled.append(item)
            for (future, path), obj in zip(spooled, objects, strict=True):
                prepared.append(self._prepared(future, path, obj))
            wrong = [p for p in prepared if p.record.series_uid != uid]
            if wrong:
                raise UpstreamError(f"IDC bucket {self.bucket.url}: {wrong[0].received.size}-byte "
                                    f"object in folder {folder}/ belongs to series "
                                    f"{wrong[0].record.series_uid}, not {uid}")
            results = self.commit(prepared)
        except BaseException:
            for future, path in spooled:
                future.cancel()
                _discard(future, path)
            raise
        failed = [r for r in results if not r.ok]
        if failed:
            raise UpstreamError(f"series {uid} from IDC: {len(failed)} instance(s) not "
                                f"cached: {failed[0].message}")
        with self.index.engine.begin() as conn:
            now = time.time()
            conn.execute(update(idc_series).where(idc_series.c.series_uid == uid)
                         .values(fetched=now, accessed=now))
        log.info("IDC series %s: %d objects fetched in %.2f s", uid, len(objects),
                 time.monotonic() - started)

    def _receive(self, obj: BucketObject) -> tuple[Future[Any], Path]:
        """GET one object into a spooled file (a page-cache copy, in this process) and hand
        its hash, fsync and parse to a helper."""
        path = self.bucket.read_into(obj, self._spool)
        return self.prepare_pool.submit(path), path

    def _prepared(self, future: Future[Any], path: Path, obj: BucketObject) -> Prepared:
        prepared = self.prepare_pool.result(future, path)
        if not isinstance(prepared, Prepared):
            if prepared.reason is FailureReason.OUT_OF_RESOURCES:  # our disk, not the object
                raise Unavailable(prepared.message)
            raise UpstreamError(f"IDC object {obj.key} is not a DICOM instance the archive "
                                f"can store: {prepared.message}")
        return prepared

    def _spool(self, copy: Callable[[IO[bytes]], int]) -> Path:
        """The body streamed into a new temp file of the store, neither hashed nor synced
        (the helper seals it); removed if the body fails half-way."""
        path: Path = self.files.spool_bytes(b"")
        try:
            with open(path, "ab") as fh:
                copy(fh)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path


def _discard(future: Future[Any], path: Path) -> None:
    """A spooled object not indexed: its temp file (and, once the helper is done, the
    sealed file, which is the same path) goes."""
    if not future.cancelled():
        try:
            future.result()
        except BaseException:
            pass
    path.unlink(missing_ok=True)
