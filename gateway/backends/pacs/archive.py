"""RemoteArchive: a DIMSE-only PACS behind the Archive protocol, with a pull-through cache.

Searches are C-FINDs (Study Root; Patient Root for the PATIENT level), always
answered by the PACS. Reads retrieve whole series (C-GET, or C-MOVE to our own
Storage SCP) into a :class:`LocalArchive`, which parses each instance once at
store time; afterwards the series is served from the cache without touching the
PACS. Writes are C-STOREs to the PACS, then into the cache.
"""
from __future__ import annotations

import copy
import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from ...config import Settings, parse_hostport
from ...dimse.identifiers import find_identifier, result_json
from ...dimse.pool import Peer
from .pullthrough import CacheWriter, Flight
from .sharedstate import Lease, SharedCacheState
from .receiver import MoveReceiver
from ...dimse.scu import Scu, ScuOptions, SubOperations
from ...archive.status import Status, category
from ...archive.local import matching
from ...archive.errors import ArchiveError, NotFound, UpstreamError
from ...archive.local.archive import LocalArchive
from .preparepool import PreparePool
from ...archive.protocol import (Archive, FailureReason, Level, Query, SearchResult, Source,
                                 StoredInstance, StoreOutcome, StoreResult, UidPath)
from ...archive.files import Spool
from ...archive.scope import EVERYTHING, Scope

log = logging.getLogger(__name__)

# Failure statuses of a C-STORE to the PACS → STOW FailureReason (PS3.18 10.5.3, PS3.4 B.2.3).
_STORE_REASONS = ((0x0111, 0x0111, FailureReason.DUPLICATE_SOP_INSTANCE),
                  (0xA700, 0xA7FF, FailureReason.OUT_OF_RESOURCES),
                  (0xA900, 0xA9FF, FailureReason.SOP_CLASS_MISMATCH),
                  (0xC000, 0xCFFF, FailureReason.CANNOT_UNDERSTAND))


class RemoteArchive:
    """The Archive protocol over pynetdicom, in front of the PACS named by ``settings.pacs``."""

    def __init__(self, settings: Settings, cache: LocalArchive, *, scu: Scu | None = None) -> None:
        self.cache = cache
        self.peer = Peer.parse(settings.pacs, "GATEWAY_PACS")
        options = ScuOptions.from_settings(settings)
        self.scu = scu or Scu(self.peer, options)
        self.ae_title = settings.ae_title
        self.mode = settings.pacs_retrieve
        self.max_wait = settings.pacs_retrieve_timeout
        self.state = SharedCacheState(
            cache, Path(cache.files.root) / "pacs-cache", ttl=settings.pacs_cache_ttl,
            max_bytes=settings.cache_max_bytes, high=settings.cache_high_watermark,
            low=settings.cache_low_watermark, purge_delay=settings.cache_purge_delay)
        self._flights: dict[str, Flight] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(options.pool_size, thread_name_prefix="pacs-retrieve")
        # seal + parse of retrieved instances off this process's interpreter lock, started
        # now in the background: a worker's first retrieval must not wait for its helpers
        self.prepare_pool = PreparePool(workers=2)
        self.prepare_pool.warm()
        self.receiver: MoveReceiver | None = None
        if self.mode == "c-move":
            bind = parse_hostport(settings.pacs_move_bind, "GATEWAY_PACS_MOVE_BIND")
            self.receiver = MoveReceiver(self.ae_title, bind, self.peer.aet, self._received)

    # ----------------------------------------------------------------- queries
    def scoped(self, scope: Scope) -> Archive:
        """The archive as ``scope`` sees it (gateway/archive/scope.py): patients narrowed in
        every C-FIND (``scoped.py``); collections refused (NotSupported)."""
        if scope.unrestricted:
            return self
        from .scoped import ScopedRemote
        return ScopedRemote(self, scope)

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
        self.scu.echo()

    def search(self, query: Query) -> SearchResult:
        """C-FIND at the query's level; offset/limit applied to the PACS's answer."""
        matching.plan(query)  # same validation as the embedded archive (InvalidQuery names it)
        root = "P" if query.level is Level.PATIENT else "S"
        matches = [result_json(ds) for ds in self.scu.find(find_identifier(query), root)]
        end = None if query.limit is None else query.offset + query.limit
        return SearchResult(matches[query.offset:end],
                            truncated=end is not None and len(matches) > end)

    def _find(self, level: str, **keys: str) -> list[Dataset]:
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "SOPInstanceUID"):
            setattr(ds, keyword, keys.get(keyword, ""))
        if level != "IMAGE":
            del ds.SOPInstanceUID
        if level == "STUDY":
            del ds.SeriesInstanceUID, ds.SeriesNumber
        return self.scu.find(ds)

    def _series_in_study(self, study: str) -> list[str]:
        found = self._find("SERIES", StudyInstanceUID=study)
        found.sort(key=lambda ds: (int(ds.get("SeriesNumber") or 0), str(ds.SeriesInstanceUID)))
        return [str(ds.SeriesInstanceUID) for ds in found]

    def _locate(self, where: UidPath) -> UidPath:
        """Fill in the parent UIDs a DIMSE retrieve needs (PS3.4 C.4.3.2.1 unique keys)."""
        if where.study and (where.series or not where.instance):
            return where
        if not (where.series or where.instance):
            raise NotFound("no study, series or instance named")
        level = "IMAGE" if where.instance else "SERIES"
        keys = {"SOPInstanceUID": where.instance} if where.instance else {}
        found = self._find(level, SeriesInstanceUID=where.series or "", **keys)
        if not found:
            what = f"instance {where.instance}" if where.instance else f"series {where.series}"
            raise NotFound(f"PACS {self.peer} has no {what}")
        return UidPath(str(found[0].StudyInstanceUID), str(found[0].SeriesInstanceUID),
                       where.instance)

    # -------------------------------------------------------------------- reads
    def metadata(self, where: UidPath) -> bytes:
        if where.instance:
            self.instance(where)
        else:
            for _series in self._series_paths(where):
                pass
        return self.cache.metadata(where)

    def instances(self, where: UidPath) -> Iterator[StoredInstance]:
        """Series by series: the first is retrieved before this returns (errors surface
        here, not mid-stream); later ones are retrieved as the iteration reaches them.
        Each series is leased while it streams: eviction never cuts it (sharedstate.py)."""
        if where.instance:
            return iter([self.instance(where)])
        leases: list[Lease] = []
        paths = self._series_paths(where, leases)
        first = next(paths)
        return self._stream(first, paths, leases)

    def _stream(self, first: UidPath, rest: Iterator[UidPath],
                leases: list[Lease]) -> Iterator[StoredInstance]:
        try:
            yield from self.cache.instances(first)
            for path in rest:  # leases the next series, then the one before is done
                self.state.release(leases.pop(0))
                yield from self.cache.instances(path)
        finally:
            for held in leases:
                self.state.release(held)
            leases.clear()

    def _series_paths(self, where: UidPath,
                      leases: list[Lease] | None = None) -> Iterator[UidPath]:
        """Each series under ``where``, complete in the cache when yielded (and leased
        first, when ``leases`` collects them)."""
        where = self._locate(where)
        assert where.study
        if where.series:
            self._hold(where.series, leases)
            self._ensure_series(where.study, where.series)
            yield UidPath(where.study, where.series)
            return
        marker = self.state.complete("study", where.study)
        series = marker["series"] if marker else self._series_in_study(where.study)
        if not series:
            raise NotFound(f"PACS {self.peer} has no study {where.study}")
        for uid in series:
            self._hold(uid, leases)
            self._ensure_series(where.study, uid)
            yield UidPath(where.study, uid)
        if not marker:
            self.state.mark("study", where.study, {"series": series})

    def _hold(self, uid: str, leases: list[Lease] | None) -> None:
        if leases is not None:
            leases.append(self.state.lease(uid))

    def instance(self, where: UidPath) -> StoredInstance:
        """From the cache at once if it is there (even while its series still arrives)."""
        try:
            return self.cache.instance(where)
        except NotFound:
            pass
        where = self._locate(where)
        assert where.study and where.series and where.instance
        sop, flight = where.instance, None
        if not self.state.complete("series", where.series):
            flight = self._flight(where.study, where.series)
            flight.wait(lambda: sop in flight.arrived, timeout=self.max_wait,
                        what=f"instance {sop} from PACS {self.peer}",
                        poll=lambda: self._cached(where))
        try:
            return self.cache.instance(where)
        except NotFound:
            if flight is not None and flight.error is not None:
                raise copy.copy(flight.error) from None
            raise NotFound(f"PACS {self.peer} has no instance {sop} in series "
                           f"{where.series}") from None

    def _cached(self, where: UidPath) -> bool:
        return bool(self.cache.index.existing([where.instance])) if where.instance else False

    # --------------------------------------------------------------- retrieval
    def _ensure_series(self, study: str, series: str) -> None:
        if self.state.complete("series", series):
            return
        flight = self._flight(study, series)
        flight.wait(lambda: False, timeout=self.max_wait,
                    what=f"series {series} from PACS {self.peer}")
        if flight.error is not None:
            raise copy.copy(flight.error)

    def _flight(self, study: str, series: str) -> Flight:
        """The retrieval of ``series`` in progress in this process, started if none is."""
        with self._lock:
            flight = self._flights.get(series)
            if flight is None:
                flight = self._flights[series] = Flight()
                self._executor.submit(self._fly, flight, study, series)
            return flight

    def _fly(self, flight: Flight, study: str, series: str) -> None:
        error: ArchiveError | None = None
        held = self.state.lease(series)  # not purged while it is (re)retrieved
        try:
            with self.state.lock(series, timeout=self.max_wait):
                if not self.state.complete("series", series):  # another node may have done it
                    count = self._retrieve(study, series, flight)
                    self.state.mark("series", series, {"study": study, "instances": count})
            self.state.evict(keep=series)  # over the high watermark: LRU series go
        except ArchiveError as exc:
            error = exc
        except Exception as exc:  # never leave waiters hanging on an unexpected bug
            log.exception("retrieving series %s from %s", series, self.peer)
            error = UpstreamError(f"retrieving series {series} from PACS {self.peer} failed: {exc}")
        finally:
            self.state.release(held)
            with self._lock:
                self._flights.pop(series, None)
            flight.finish(error)

    def _get(self, ident: Dataset, flight: Flight) -> SubOperations:
        """C-GET into a CacheWriter; the writer is drained before the outcome counts."""
        series = str(ident.SeriesInstanceUID)
        writer = CacheWriter(self.cache, flight, self.prepare_pool,
                             room=lambda size: self.state.make_room(size, keep=series))
        try:
            result = self.scu.get(ident, writer.sink)
        except BaseException:
            try:
                writer.close()
            except ArchiveError:
                pass  # the retrieval error says more
            raise
        writer.close()
        return result

    def _move(self, ident: Dataset) -> SubOperations:
        """C-MOVE to our own Storage SCP, which stores into the cache as instances come."""
        assert self.receiver is not None
        self.receiver.ensure_running()
        where = f"{self.ae_title} at this host, port {self.receiver.bind[1]}, in its DICOM modalities"
        return self.scu.move(
            ident, self.ae_title,
            unknown_hint=f": the PACS must know our AE as a C-MOVE destination (add {where})",
            failed_hint=f"; if the PACS does not know our AE {self.ae_title} as a C-MOVE "
                        f"destination, add {where}")

    def _retrieve(self, study: str, series: str, flight: Flight) -> int:
        """One series into the cache by C-GET or C-MOVE; the number of instances."""
        ident = Dataset()
        ident.QueryRetrieveLevel = "SERIES"
        ident.StudyInstanceUID, ident.SeriesInstanceUID = study, series
        try:
            if self.receiver is not None:
                result = self._move(ident)
            else:
                result = self._get(ident, flight)
        except UpstreamError as exc:
            if exc.status is not None and exc.status != Status.MOVE_DESTINATION_UNKNOWN \
                    and category(exc.status) == "failure" and not self._find(
                        "SERIES", StudyInstanceUID=study, SeriesInstanceUID=series):
                raise NotFound(f"PACS {self.peer} has no series {series} in study {study}") from exc
            raise
        if result.completed == 0:
            raise NotFound(f"PACS {self.peer} has no instances in series {series} of study {study}")
        return result.completed

    def _received(self, event: Event) -> int:
        """EVT_C_STORE of a retrieval: into the cache (atomically), then wake the waiters."""
        data = event.encoded_dataset()
        self.state.make_room(len(data))  # the series arriving is leased by its flight
        result = self.cache.store(io.BytesIO(data))
        if not result.ok and result.reason is not FailureReason.DUPLICATE_SOP_INSTANCE:
            log.warning("cache refused %s from %s: %s", result.sop_uid, self.peer, result.message)
            return int(result.reason or Status.PROCESSING_FAILURE)
        with self._lock:
            flight = self._flights.get(result.series_uid)
        if flight is not None:
            flight.arrive(result.sop_uid)
        return Status.SUCCESS

    # ------------------------------------------------------------------- writes
    def spool(self) -> Spool:
        """Uploads spool into the cache's store; what the PACS accepts is then put there."""
        return self.cache.spool()

    def store_batch(self, sources: Sequence[Source], *, expected_study: str | None = None,
                    move: bool = False) -> list[StoreResult]:
        """One C-STORE per instance: the PACS answers each one on its own."""
        return [self.store(s, expected_study=expected_study, move=move) for s in sources]

    def store(self, source: Source, *, expected_study: str | None = None,
              move: bool = False, scope: Scope = EVERYTHING) -> StoreResult:
        """C-STORE to the PACS first; only what the PACS accepted enters the cache, and what
        the cache would refuse is not sent to the PACS either (PS3.18 10.5.3)."""
        received = self.cache.receive(source, move)
        if isinstance(received, StoreResult):
            return received
        prepared = self.cache.prepare(received)
        if isinstance(prepared, StoreResult):
            return prepared
        rec = prepared.record
        old = self.cache.index.existing([rec.sop_uid]).get(rec.sop_uid)
        refusal = self.cache.refusal(prepared, old, expected_study, scope)
        if refusal is None:
            try:
                self.scu.store(received.path, rec.instance["sop_class_uid"],
                               rec.instance["transfer_syntax"])
            except UpstreamError as exc:
                if exc.status is None:
                    received.path.unlink(missing_ok=True)
                    raise
                refusal = StoreResult(StoreOutcome.FAILED, reason=_store_reason(exc.status),
                                      message=exc.message, sop_uid=rec.sop_uid,
                                      sop_class_uid=rec.instance["sop_class_uid"],
                                      study_uid=rec.study_uid, series_uid=rec.series_uid)
            except ArchiveError:
                received.path.unlink(missing_ok=True)
                raise
        if refusal is not None:
            received.path.unlink(missing_ok=True)
            return refusal
        result = self.cache.commit([prepared], expected_study=expected_study)[0]
        self.state.clear("study", rec.study_uid)  # its series list may have grown
        return result

    def close(self) -> None:
        """Retrieval threads, cache helpers, our C-MOVE destination, the pooled associations
        (A-RELEASE: the PACS sees a clean end) and the cache's connections."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.state.close()
        self.prepare_pool.close()
        if self.receiver is not None:
            self.receiver.stop()
        self.scu.close()
        self.cache.close()


def _store_reason(status: int) -> FailureReason:
    for low, high, reason in _STORE_REASONS:
        if low <= status <= high:
            return reason
    return FailureReason.PROCESSING_FAILURE

