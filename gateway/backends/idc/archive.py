"""IdcArchive: NCI Imaging Data Commons' public buckets behind the Archive protocol.

It is the embedded archive (so every face's searches, FHIR ImagingStudy's SQL, collections
and scopes work unchanged on it) whose index was loaded from IDC's series index
(:mod:`.catalog`). A read below series level (instances, metadata, frames, rendered,
retrieve, C-GET/C-MOVE, QIDO instances of a series) first makes sure each series it names
is in the cache: the series folder is listed and every object fetched (in parallel, each
call bounded) into the archive's store, parsed and indexed as an import or the PACS
cache does (:mod:`.fetch`), then the series is marked fetched; a later read makes no bucket
call. A read of one instance waits only for that instance: it is served as soon as its
object is indexed, while the rest of the series arrives.

A series stays in the cache whole or not at all: a missing object (502) or a bucket that
does not answer (503) drops what was indexed of it. One retrieval per series: requests of
this process share a :class:`Flight` (run on a thread of its own, so a request for one
instance can leave before the series is done); processes and nodes take turns on the
pull-through cache's per-series lock (a PostgreSQL advisory lock, or a file lock on
SQLite) and find the series fetched when their turn comes, and a request for one instance
meanwhile looks for it in the index every 0.1 s.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
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
from .fetch import SeriesFetch

log = logging.getLogger(__name__)
T = TypeVar("T")
FLIGHTS = 16  # series fetched at once by one process (each on IDC_FETCH_WORKERS threads)
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
        self._instance_waiters: Counter[str] = Counter()  # series UID -> requests for one
        self._flight_threads = ThreadPoolExecutor(FLIGHTS, thread_name_prefix="idc-flight")
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
        """``read()`` once the series under ``where`` are cached (one instance: once it
        is). This process remembers what it saw fetched; another process may have evicted
        it since: then a NotFound sends it to the index (and the bucket) once more."""
        if where.instance and where.series and where.series not in self._fetched:
            self._ensure_instance(where, scope)
        else:
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
        self._flight_threads.shutdown(wait=False, cancel_futures=True)
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

    def _flight(self, uid: str, folder: str, expected: int) -> Flight:
        """The fetch of ``uid`` in progress in this process, started if none is."""
        with self._flights_lock:
            flight = self._flights.get(uid)
            if flight is None:
                flight = self._flights[uid] = Flight()
                self._flight_threads.submit(self._fly, flight, uid, folder, expected)
            return flight

    def _ensure_series(self, uid: str, folder: str, expected: int) -> None:
        flight = self._flight(uid, folder, expected)
        flight.wait(lambda: False, timeout=self.max_wait, what=f"series {uid} from IDC")
        if flight.error is not None:
            raise copy.copy(flight.error)

    def _ensure_instance(self, where: UidPath, scope: Scope) -> None:
        """Until instance ``where.instance`` of a series being fetched is indexed (here or
        by another process), or the fetch ended; its error if it failed without it."""
        sop = where.instance
        assert sop is not None
        for uid, folder, expected in self._unfetched(UidPath(where.study, where.series), scope):
            if self._indexed(sop):
                return
            flight = self._flight(uid, folder, expected)
            with self._flights_lock:
                self._instance_waiters[uid] += 1  # the fetch indexes in batches meanwhile
            try:
                flight.wait(lambda: sop in flight.arrived, timeout=self.max_wait,  # noqa: B023
                            what=f"instance {sop} from IDC", poll=lambda: self._indexed(sop))
            finally:
                with self._flights_lock:
                    self._instance_waiters[uid] -= 1
                    if self._instance_waiters[uid] <= 0:
                        del self._instance_waiters[uid]
            if sop not in flight.arrived and flight.error is not None:
                raise copy.copy(flight.error)

    def _indexed(self, sop: str) -> bool:
        return bool(self.index.existing([sop]))

    def _fly(self, flight: Flight, uid: str, folder: str, expected: int) -> None:
        error: ArchiveError | None = None
        try:
            with self.state.lock(uid, timeout=self.max_wait):
                if not self._is_fetched(uid):  # another process may have fetched it
                    self._fetch(uid, folder, expected, flight.arrive)
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

    def _fetch(self, uid: str, folder: str, expected: int,
               arrive: Callable[[str], None]) -> None:
        """List, fetch, parse and index the series (:class:`.fetch.SeriesFetch`), then mark
        it fetched."""
        started = time.monotonic()
        count = SeriesFetch(self, uid, folder, expected, arrive,
                            eager=lambda: self._instance_waiters.get(uid, 0) > 0).run()
        with self.index.engine.begin() as conn:
            now = time.time()
            conn.execute(update(idc_series).where(idc_series.c.series_uid == uid)
                         .values(fetched=now, accessed=now))
        log.info("IDC series %s: %d objects fetched in %.2f s", uid, count,
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
