"""LocalArchive: the embedded archive (index database + file store)."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ...cache import BoundedCache
from ..errors import NotFound, Unavailable
from ..files import ObjectReader, Received
from ..scope import EVERYTHING, Scope
from ..protocol import (Archive, FailureReason, Query, SearchResult, Source, StoredInstance,
                        StoreOutcome, StoreResult, UidPath)
from . import matching
from .index import Existing, Index, IndexWriteError, Pending
from .ingest import IngestError, InstanceRecord, parse_file
from .store import FileStore, TempWriter, out_of_space


@dataclass(frozen=True)
class Prepared:
    """A received file that parsed: ready for the (serial) place-and-index step."""

    received: Received
    record: InstanceRecord


class LocalArchive:
    """Index + files under ``data_dir``. Thread-safe; several processes may share it."""

    def __init__(self, data_dir: Path, index_url: str, *, duplicate_policy: str = "reject",
                 index: Index | None = None, metadata_cache_bytes: int = 128 << 20,
                 objects: Callable[[FileStore], Any] | None = None,
                 files_dir: Path | None = None) -> None:
        local = FileStore(Path(data_dir), files_dir)
        # ``objects``: an object store over the local spool (STORE_URL=s3://, gateway/archive/s3)
        remote = objects(local) if objects else None
        self.files: Any = remote if remote is not None else local
        self._remote: ObjectReader | None = remote
        self._files_root = str(self.files.files) + "/"  # str + str is cheaper than Path / str
        self.index = index or Index(index_url)
        self.duplicate_policy = duplicate_policy
        # series documents by (study, series, version): a new version is a new key
        self._metadata: BoundedCache[tuple[str, str, int], bytes] = BoundedCache(
            4096, metadata_cache_bytes)
        self._commit_lock = threading.Lock()  # with the store's file lock: one writer at a time

    # ------------------------------------------------------------------ reads
    def scoped(self, scope: Scope) -> Archive:
        """The archive as ``scope`` sees it (gateway/archive/scope.py): a view whose every
        statement carries the scope's WHERE (:mod:`.scoping`)."""
        if scope.unrestricted:
            return self
        from .view import ScopedLocal
        return ScopedLocal(self, scope)

    def collections(self, scope: Scope = EVERYTHING) -> dict[str, dict[str, int]]:
        return {k: v for k, v in self.index.collection_counts(scope).items() if k}

    def materialize(self, where: UidPath, scope: Scope = EVERYTHING) -> None:
        """Every file is here already."""

    def study_collections(self, study_uids: Sequence[str]) -> dict[str, str]:
        return self.index.study_collections(study_uids)

    def has_collection(self, name: str, scope: Scope = EVERYTHING) -> bool:
        if not scope.sees_collection(name):
            return False
        if scope.patients is None:
            return self.index.has_collection(name)
        return name in self.collections(scope)

    def ping(self) -> None:
        """Ready: the index answers and takes writes, and the file store takes files."""
        self.index.ping()
        refusal = self.files.write_refusal()
        if refusal:
            raise Unavailable(f"file store not writable: {refusal}")
        if self._remote is not None:
            self.files.ping()

    def close(self) -> None:
        """Close the index's database connections (a worker exiting)."""
        self.index.engine.dispose()
        if self._remote is not None:
            self.files.close()

    @property
    def object_store(self) -> bool:
        """The files are in an object store (STORE_URL=s3://)."""
        return self._remote is not None

    def sweep_orphans(self, grace: float) -> int:
        """Objects of the object store no index row points at, older than ``grace`` seconds
        (a node died between its PUT and its commit): removed; how many. 0 on a file store,
        whose leftovers are temp files (swept at open) or files ``check --repair`` indexes."""
        if self._remote is None:
            return 0
        return int(self.files.sweep_orphans(self.index.paths_known, grace))

    def search(self, query: Query, scope: Scope = EVERYTHING) -> SearchResult:
        try:
            with self.index.engine.connect() as conn:
                return matching.run(conn, query, scope)
        except SQLAlchemyError as exc:
            raise Unavailable(f"index query failed: {exc.__class__.__name__}") from exc

    def instances(self, where: UidPath, scope: Scope = EVERYTHING) -> Iterator[StoredInstance]:
        rows = self.index.instance_rows(where, scope)  # NotFound before the first yield
        return (self._stored(row) for row in rows)

    def instance(self, where: UidPath, scope: Scope = EVERYTHING) -> StoredInstance:
        return next(self.instances(where, scope))

    def metadata(self, where: UidPath, scope: Scope = EVERYTHING) -> bytes:
        """JSON array of instance metadata; series documents are cached by version (a series
        lies wholly inside or outside a scope, so one document serves every scope)."""
        if where.instance or not where.series:
            return b"[" + b",".join(self.index.metadata_rows(where, scope)) + b"]"
        version = self.index.version(where, scope)
        if version is None:
            raise NotFound(f"no such series {where.series}")
        key = (where.study or "", where.series, version)
        doc = self._metadata.get(key)
        if doc is None:
            doc = self._metadata.put(
                key, b"[" + b",".join(self.index.metadata_rows(where, scope)) + b"]")
        return doc

    def _stored(self, row: Row[Any]) -> StoredInstance:
        if self._remote is None:
            path, key = Path(self._files_root + row.path), ""
        else:
            path, key = self.files.hot_path(row.path), row.path
        return StoredInstance(
            study_uid=row.study_uid, series_uid=row.series_uid, sop_uid=row.sop_uid,
            sop_class_uid=row.sop_class_uid, transfer_syntax=row.transfer_syntax,
            path=path, size=row.size, number_of_frames=row.number_of_frames or 0,
            frame_table=row.frames, remote=self._remote, key=key)

    # ----------------------------------------------------------------- writes
    def spool(self) -> TempWriter:
        """A temp file in the store to stream an upload into (then :meth:`store` it)."""
        return self.files.spool()

    def store(self, source: Source, *, expected_study: str | None = None,
              move: bool = False, scope: Scope = EVERYTHING) -> StoreResult:
        """Store one file. ``move=True`` takes ownership of a temp file under ``tmp/``."""
        return self.store_batch([source], expected_study=expected_study, move=move,
                                scope=scope)[0]

    def store_batch(self, sources: Sequence[Source], *, expected_study: str | None = None,
                    move: bool = False, scope: Scope = EVERYTHING) -> list[StoreResult]:
        """Receive and parse each file, then place and index them all in one transaction;
        what lies outside ``scope`` is refused (0x0124) and nothing of it stored. A file
        without a collection stored into a one-collection scope joins that collection."""
        results: list[StoreResult | None] = []
        ready: list[tuple[int, Prepared]] = []
        for source in sources:
            received = self.receive(source, move)
            prepared = self.prepare(received) if isinstance(received, Received) else received
            if isinstance(prepared, Prepared) and scope.collections and len(scope.collections) == 1 \
                    and not prepared.record.study.get("collection"):
                prepared = with_collection(prepared, next(iter(scope.collections)))
            if isinstance(prepared, StoreResult):
                results.append(prepared)
            else:
                results.append(None)
                ready.append((len(results) - 1, prepared))
        committed = self.commit([p for _i, p in ready], expected_study=expected_study,
                                scope=scope)
        for (i, _p), result in zip(ready, committed, strict=True):
            results[i] = result
        return results  # type: ignore[return-value]

    def receive(self, source: Source, move: bool = False) -> Received | StoreResult:
        """``source`` in this store's temp space with its digest (``move``: a path of ours,
        taken as it is), or why it could not be received."""
        try:
            if isinstance(source, Received):
                return source  # spooled into tmp/ with its digest: ours now
            if move and isinstance(source, Path):
                return self.files.hash_file(source)
            return self.files.receive(source)
        except OSError as exc:
            return StoreResult(StoreOutcome.FAILED, reason=FailureReason.OUT_OF_RESOURCES,
                               message=f"cannot receive file: {exc.strerror or exc}")

    def prepare(self, received: Received) -> Prepared | StoreResult:
        """Parse a received temp file; on failure discard it and say why."""
        return prepare_received(received)

    def commit(self, batch: list[Prepared], *, expected_study: str | None = None,
               scope: Scope = EVERYTHING) -> list[StoreResult]:
        """Place and index a batch: duplicates and conflicts decided against the index, under
        the store lock (threads and processes), so no writer decides against a stale index."""
        results: list[StoreResult] = []
        try:
            with self._commit_lock, self.files.exclusive():
                for segment in _segments(batch):
                    results += self._commit_segment(segment, expected_study, scope)
        except BaseException:
            for p in batch[len(results):]:  # not decided: the temp files are still ours
                p.received.path.unlink(missing_ok=True)
            raise
        return results

    def _commit_segment(self, segment: list[Prepared], expected_study: str | None,
                        scope: Scope) -> list[StoreResult]:
        try:
            return self._commit(segment, expected_study, scope)
        except IntegrityError:
            pass  # a writer without our lock (another file store) indexed one meanwhile
        results = []
        for p in segment:  # decide one at a time against what it wrote
            try:
                results += self._commit([p], expected_study, scope)
            except IntegrityError:
                p.received.path.unlink(missing_ok=True)
                results.append(_failed(p, FailureReason.PROCESSING_FAILURE,
                                       "another writer stored this instance at the same time"))
        return results

    def _commit(self, batch: list[Prepared], expected_study: str | None,
                scope: Scope = EVERYTHING) -> list[StoreResult]:
        existing = self.index.existing([p.record.sop_uid for p in batch])
        outside = (set() if scope.unrestricted
                   else self.index.outside([p.record for p in batch], scope))
        decided = [self._decide(p, existing.get(p.record.sop_uid), expected_study,
                                p.record.sop_uid in outside) for p in batch]
        placed = [(p, item) for p, (_r, item) in zip(batch, decided, strict=True)
                  if item is not None]
        try:
            self.files.flush()  # every object is stored before its row (an object store)
            self.index.add([item for _p, item in placed])
        except IntegrityError:
            self._take_back(placed, restore=True)  # the retry places them again
            raise
        except IndexWriteError as exc:
            self._take_back(placed, restore=False)
            if not exc.out_of_space:
                raise  # read-only or unreachable: Unavailable, the whole request says why
            failed = {id(p) for p, _item in placed}
            return [_failed(p, FailureReason.OUT_OF_RESOURCES, exc.message) if id(p) in failed
                    else r for p, (r, _item) in zip(batch, decided, strict=True)]
        except BaseException:
            self._take_back(placed, restore=False)
            raise
        for p, item in placed:
            if self._remote is not None:
                p.received.path.unlink(missing_ok=True)  # uploaded and indexed
            if item.replace and item.replace.path != item.path:
                self.files.delete(item.replace.path)
        return [r for r, _item in decided]

    def _take_back(self, placed: list[tuple[Prepared, Pending]], *, restore: bool) -> None:
        """Undo the placement of files the index did not take. A path some row points to
        (identical bytes a lock-less writer indexed) stays; the rest go back to their temp
        name (``restore``, for a retry) or away."""
        if not placed:
            return
        if self._remote is not None:  # objects no row points at: the orphan sweeper's
            for p, _item in placed:
                if not restore:  # a retry uploads the spooled file again, to a fresh key
                    p.received.path.unlink(missing_ok=True)
            return
        try:
            keep = self.index.paths_known([item.path for _p, item in placed]) if restore else set()
        except SQLAlchemyError:
            keep, restore = set(), False
        for p, item in placed:
            if item.path in keep:
                continue
            if restore:
                try:
                    os.replace(self.files.local_path(item.path), p.received.path)
                    continue
                except OSError:
                    pass
            self.files.delete(item.path)
            p.received.path.unlink(missing_ok=True)

    def _decide(self, p: Prepared, old: Existing | None, expected_study: str | None,
                outside: bool = False) -> tuple[StoreResult, Pending | None]:
        rec = p.record
        ident = _ident(p)
        rel = self.files.key(rec.study_uid, rec.series_uid, rec.sop_uid, p.received.sha256)
        refused = not_authorised(p) if outside else self.refusal(p, old, expected_study)
        if refused is not None:
            p.received.path.unlink(missing_ok=True)
            return refused, None
        if old and old.sha256 == p.received.sha256:
            return self._duplicate(p, old), None
        try:
            self.files.put(p.received, rel)
        except OSError as exc:
            p.received.path.unlink(missing_ok=True)
            return _io_failure(p, exc), None
        outcome = StoreOutcome.REPLACED if old else StoreOutcome.STORED
        return StoreResult(outcome, **ident), Pending(rec, rel, replace=old)

    def refusal(self, p: Prepared, old: Existing | None, expected_study: str | None,
                scope: Scope = EVERYTHING) -> StoreResult | None:
        """Why ``p`` is refused before anything is placed (PS3.18 10.5.3): outside ``scope``,
        not the study the request names, or other bytes under a stored SOPInstanceUID
        (DUPLICATE_POLICY reject). The PACS backend asks the same before it sends anything
        to the PACS."""
        rec = p.record
        if not scope.unrestricted and self.index.outside([rec], scope):
            return not_authorised(p)
        if expected_study and rec.study_uid != expected_study:
            return _failed(p, FailureReason.STUDY_MISMATCH, f"StudyInstanceUID {rec.study_uid} "
                           f"is not the study {expected_study} of the request")
        if old and old.sha256 != p.received.sha256 and self.duplicate_policy != "overwrite":
            return _failed(p, FailureReason.DUPLICATE_SOP_INSTANCE, f"SOPInstanceUID "
                           f"{rec.sop_uid} is already stored with different content")
        return None

    def _duplicate(self, p: Prepared, old: Existing) -> StoreResult:
        """Identical bytes: a success that changes nothing in the index (PS3.18 10.5: a STOW
        may be repeated). The fresh copy, verified by its digest, takes the stored file's
        place, so sending the original again repairs a file gone missing or damaged."""
        try:
            if self._remote is not None:  # an object store: sent again only if it is gone
                if p.received.path.exists() and not self.files.exists(old.path):
                    self.files.put_now(p.received, old.path)
                p.received.path.unlink(missing_ok=True)
            elif p.received.path.exists():
                self.files.put(p.received, old.path)
        except OSError as exc:
            p.received.path.unlink(missing_ok=True)
            return _io_failure(p, exc)
        return StoreResult(StoreOutcome.DUPLICATE, message="identical instance already stored",
                           **_ident(p))


def with_collection(p: Prepared, name: str) -> Prepared:
    """``p`` as an instance of collection ``name`` (``import --collection``)."""
    record = replace(p.record, study={**p.record.study, "collection": name})
    return Prepared(p.received, record)


def not_authorised(p: Prepared) -> StoreResult:
    """An instance outside the caller's scope (PS3.7 C.5.3 0x0124 Refused: Not Authorised);
    the same words whether the patient, the collection or the study it would join is out."""
    return _failed(p, FailureReason.NOT_AUTHORIZED,
                   "this instance is outside what this request may store into")


def _ident(p: Prepared) -> dict[str, Any]:
    rec = p.record
    return dict(sop_class_uid=rec.instance["sop_class_uid"], sop_uid=rec.sop_uid,
                study_uid=rec.study_uid, series_uid=rec.series_uid)


def _failed(p: Prepared, reason: FailureReason, message: str) -> StoreResult:
    return StoreResult(StoreOutcome.FAILED, reason=reason, message=message, **_ident(p))


def _io_failure(p: Prepared, exc: OSError) -> StoreResult:
    """A file store write failed: 0xA700 when the disk is full (PS3.4 B.2.3), else 0x0110."""
    why = f"cannot write the file store: {exc.strerror or exc}"
    if out_of_space(exc):
        return _failed(p, FailureReason.OUT_OF_RESOURCES, why)
    return _failed(p, FailureReason.PROCESSING_FAILURE, why)


def _segments(batch: list[Prepared]) -> Iterator[list[Prepared]]:
    """Split so that no SOPInstanceUID repeats within a segment (later copies see earlier ones)."""
    segment: list[Prepared] = []
    seen: set[str] = set()
    for p in batch:
        if p.record.sop_uid in seen:
            yield segment
            segment, seen = [], set()
        segment.append(p)
        seen.add(p.record.sop_uid)
    if segment:
        yield segment


def prepare_received(received: Received) -> Prepared | StoreResult:
    """Parse a received temp file; on failure discard it and say why (no index needed,
    so pool processes run it too)."""
    try:
        record = parse_file(received.path, sha256=received.sha256, size=received.size)
    except IngestError as exc:
        received.path.unlink(missing_ok=True)
        return StoreResult(StoreOutcome.FAILED, reason=exc.reason, message=exc.message)
    return Prepared(received, record)
