"""One cold series from the bucket into the cache, its instances indexed as they are parsed.

The folder is listed, every object fetched on the bucket's threads (each GET streamed into a
temp file), sealed and parsed by the helper processes, and indexed. While some request waits
for one instance of the series (``eager()``), the parsed instances are indexed in batches:
the first at once, then at least every COMMIT_EVERY seconds (or COMMIT_BATCH instances), as
the PACS pull-through cache does, so that request is answered as soon as its object is in,
while the rest of the series arrives. Otherwise the series is indexed in one transaction at
the end: each batch recounts the series, study and patient, which cost a cold series
metadata ~15% (1.02-1.07x a bare download with one transaction, 1.20x with batches every
0.1 s), and requests for the whole series wait for all of it anyway (it is marked fetched
only once every object is indexed).

Whole or not at all, still: if anything fails (an object missing, not DICOM or of another
series, the bucket silent, the disk full), the instances indexed so far are dropped again
(:func:`.evict.drop_series`) and every temp file removed, so the cache holds nothing of the
series and the next request tries afresh.
"""
from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future
from pathlib import Path
from typing import Any

from ...archive.errors import UpstreamError
from ...archive.local.archive import Prepared
from .bucket import BucketObject
from .evict import drop_series

COMMIT_BATCH = 64    # instances per index transaction (each recounts the series and study)
COMMIT_EVERY = 0.1   # seconds a parsed instance may wait for its commit (the first: none)


class SeriesFetch:
    """Fetch ``uid`` (folder ``folder``, ``expected`` objects) into ``archive``; ``arrive``
    is told each SOP Instance UID once it is indexed; ``eager()`` says whether a request
    waits for one instance now."""

    def __init__(self, archive: Any, uid: str, folder: str, expected: int,
                 arrive: Callable[[str], None], eager: Callable[[], bool]) -> None:
        self.archive, self.bucket = archive, archive.bucket
        self.uid, self.folder, self.expected, self.arrive = uid, folder, expected, arrive
        self.eager = eager
        self.receiving: dict[Future[Any], BucketObject] = {}
        self.parsing: dict[Future[Any], tuple[Path, BucketObject]] = {}
        self.ready: list[Prepared] = []
        self.indexed = 0
        self._last_commit = 0.0

    def run(self) -> int:
        """Objects fetched and indexed; raises (having undone everything) on failure."""
        objects = [o for o in self.bucket.series_objects(self.folder) if not o.key.endswith("/")]
        if not objects or len(objects) < self.expected:
            raise UpstreamError(f"IDC bucket {self.bucket.url}: series {self.uid} has "
                                f"{len(objects)} of its {self.expected} objects in folder "
                                f"{self.folder}/ (objects missing)")
        try:
            with concurrent.futures.ThreadPoolExecutor(
                    self.bucket.workers, thread_name_prefix="idc-fetch") as threads:
                self.receiving = {threads.submit(self.archive._receive, o): o for o in objects}
                try:
                    self._pump()
                finally:  # on failure, GETs not started yet are not started
                    for future in self.receiving:
                        future.cancel()
        except BaseException:
            self._undo()
            raise
        return self.indexed

    def _pump(self) -> None:
        while self.receiving or self.parsing:
            done, _ = concurrent.futures.wait([*self.receiving, *self.parsing],
                                              timeout=COMMIT_EVERY, return_when=FIRST_COMPLETED)
            for future in done:
                if future in self.receiving:
                    obj = self.receiving.pop(future)
                    parse, path = future.result()  # the bucket's 502/503
                    self.parsing[parse] = (path, obj)
                else:
                    path, obj = self.parsing.pop(future)
                    self.ready.append(self._checked(self.archive._prepared(future, path, obj)))
            self._commit(final=not (self.receiving or self.parsing))

    def _checked(self, prepared: Prepared) -> Prepared:
        if prepared.record.series_uid != self.uid:
            prepared.received.path.unlink(missing_ok=True)
            raise UpstreamError(f"IDC bucket {self.bucket.url}: {prepared.received.size}-byte "
                                f"object in folder {self.folder}/ belongs to series "
                                f"{prepared.record.series_uid}, not {self.uid}")
        return prepared

    def _commit(self, final: bool) -> None:
        if not self.ready:
            return
        if not final and not (self.eager() and (
                not self.indexed or len(self.ready) >= COMMIT_BATCH
                or time.monotonic() - self._last_commit >= COMMIT_EVERY)):
            return
        batch, self.ready = self.ready, []
        self._last_commit = time.monotonic()
        results = self.archive.commit(batch)  # its files are placed or removed either way
        failed = [r for r in results if not r.ok]
        if failed:
            raise UpstreamError(f"series {self.uid} from IDC: {len(failed)} instance(s) not "
                                f"cached: {failed[0].message}")
        self.indexed += len(results)
        for result in results:
            self.arrive(result.sop_uid)

    def _undo(self) -> None:
        """Nothing of the series left: temp files of objects not indexed, then its rows."""
        for future, obj in self.receiving.items():  # finished after the failure, not read
            if not future.cancelled() and future.exception() is None:
                parse, path = future.result()
                self.parsing[parse] = (path, obj)
        for future, (path, _obj) in self.parsing.items():
            future.cancel()
            _discard(future, path)
        for prepared in self.ready:
            prepared.received.path.unlink(missing_ok=True)
        drop_series(self.archive, self.uid)  # even if no batch said so: one may be half in


def _discard(future: Future[Any], path: Path) -> None:
    """A spooled object not indexed: its temp file (and, once the helper is done, the
    sealed file, which is the same path) goes."""
    if not future.cancelled():
        try:
            future.result()
        except BaseException:
            pass
    path.unlink(missing_ok=True)
