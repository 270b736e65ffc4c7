"""Bookkeeping of the pull-through cache: what is complete, who is fetching what.

An instance in the cache is always complete (the file store writes atomically),
but a series is complete only once its whole retrieval succeeded: that fact is a
marker file under ``DATA_DIR/pacs-cache/``, visible to every process sharing the
data dir (gunicorn workers, the DIMSE SCP). A per-series ``flock`` makes the
processes take turns, and an in-process :class:`Flight` lets concurrent requests
of one process share a retrieval and wake up as instances arrive.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterator

from pynetdicom.events import Event

from ...archive.errors import ArchiveError, UpstreamError, UpstreamTimeout
from ...archive.local.archive import LocalArchive, Prepared
from .preparepool import PreparePool
from ...archive.protocol import FailureReason, StoreResult
from ...archive.local.store import safe_component
from ...archive.status import Status

log = logging.getLogger(__name__)


class CacheState:
    """Completion markers (``series/<uid>``, ``study/<uid>``) and per-series locks."""

    def __init__(self, root: Path, ttl: float = 0.0) -> None:
        self.root, self.ttl = root, ttl
        for sub in ("series", "study", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, uid: str) -> Path:
        return self.root / kind / safe_component(uid)

    def complete(self, kind: str, uid: str) -> dict[str, Any] | None:
        """The marker's content if ``uid`` is fully cached (and younger than the TTL)."""
        path = self._path(kind, uid)
        try:
            if self.ttl and time.time() - path.stat().st_mtime > self.ttl:
                return None
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def mark(self, kind: str, uid: str, content: dict[str, Any]) -> None:
        """Write the marker atomically (temp + rename), after the data is in the cache."""
        path = self._path(kind, uid)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(content))
        os.replace(tmp, path)

    def clear(self, kind: str, uid: str) -> None:
        self._path(kind, uid).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, uid: str, timeout: float) -> Iterator[None]:
        """Exclusive per-series lock across processes (and threads: one fd each)."""
        fd = os.open(self._path("locks", uid), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise UpstreamTimeout(f"series {uid} has been retrieving in another "
                                              f"process for over {timeout:g} s") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock


class Flight:
    """One retrieval of one series in progress, shared by every request waiting on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.arrived: set[str] = set()
        self.done = False
        self.error: ArchiveError | None = None

    def arrive(self, sop_uid: str) -> None:
        with self._cond:
            self.arrived.add(sop_uid)
            self._cond.notify_all()

    def finish(self, error: ArchiveError | None = None) -> None:
        with self._cond:
            self.done, self.error = True, error
            self._cond.notify_all()

    def wait(self, ready: Callable[[], bool], *, timeout: float, what: str,
             poll: Callable[[], bool] = lambda: False, interval: float = 0.1) -> None:
        """Until ``ready()`` (checked on every arrival) or ``poll()`` (checked every
        ``interval``: another process may be the one storing) or the flight ends."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if self.done or ready():
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamTimeout(f"{what} did not arrive within {timeout:g} s")
                self._cond.wait(min(interval, remaining))
                if self.done or ready():
                    return
            if poll():  # outside the lock: arrivals must not wait for a database query
                return


# Each commit recounts the series and study: on 120 CT slices, batches of 16/20 ms took
# 640-690 ms, 32/50 ms 560-585 ms, 64/200 ms 520-575 ms (in process, Orthanc, 2 cores).
COMMIT_BATCH = 64     # instances per index transaction while a retrieval streams in
COMMIT_EVERY = 0.1    # seconds an arrived instance may wait for its commit (the first: none)
HARVEST_EVERY = 0.005  # seconds between looks at the helpers' results while the queue is idle
MAX_PENDING = 8        # spooled instances the helpers may lag behind before the PACS waits


class CacheWriter:
    """Stores the instances of one C-GET off the association's thread.

    The PACS sends the next instance only after our C-STORE response (PS3.4
    C.4.3.3), so storing inline (write + fsync, parse, index) would pace the PACS
    at our disk's speed: ~15 ms per CT slice against ~3.5 ms for the transfer.
    The handler answers once the bytes are queued (bounded: a full queue makes the
    PACS wait). One writer thread drains the queue: it only spools each instance and
    collects what the :class:`PreparePool` helpers sealed and parsed (a second writer
    thread, or hashing here, competes with pynetdicom for the GIL and slows the C-GET
    by a third: see preparepool.py), and indexes them in batches. Only this thread
    touches the batch and the errors until :meth:`close` has joined it. Nothing is in
    the cache before its file is complete and synced; :meth:`close` waits for the
    queue to drain and reports instances that could not be stored.
    """

    def __init__(self, cache: LocalArchive, flight: Flight, pool: PreparePool, *,
                 depth: int = 16, room: Callable[[int], None] | None = None) -> None:
        self.cache, self.flight, self.pool = cache, flight, pool
        self.room = room  # called with a batch's bytes before it is indexed (the cap)
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._prepared: list[Prepared] = []
        self._last_commit = 0.0  # the first instance is indexed at once: a viewer waits for it
        self.errors: list[str] = []
        self.stored = 0
        pool.warm()  # no-op once the helpers run
        self._thread = threading.Thread(target=self._work, name="cache-writer", daemon=True)
        self._thread.start()

    def sink(self, event: Event) -> int:
        """EVT_C_STORE handler of the retrieval: queue the Part 10 bytes, answer Success."""
        self._queue.put(event.encoded_dataset())
        return Status.SUCCESS

    def _work(self) -> None:
        """Spool, hand over to the pool, collect finished results: helpers stay busy
        while this thread already spools the next instance."""
        pending: dict[Future, Path] = {}
        while True:
            try:
                data = self._queue.get(timeout=HARVEST_EVERY if pending else None)
            except queue.Empty:
                data = b""
            if data is None:
                break
            if data:
                try:
                    spooled = self.cache.files.spool_bytes(data)
                except OSError as exc:
                    self._fail(f"cannot write the cache: {exc.strerror or exc}")
                else:
                    pending[self.pool.submit(spooled)] = spooled
            self._harvest(pending, block=False)
            if len(pending) >= MAX_PENDING:  # helpers starting or slow: let the queue fill
                self._harvest(pending, block=False, oldest=True)
        self._harvest(pending, block=True)

    def _harvest(self, pending: dict[Future, Path], *, block: bool, oldest: bool = False) -> None:
        """Take the helpers' finished results (all of them if ``block``, at least the
        oldest if ``oldest``) and index them."""
        done = list(pending) if block else [f for f in pending if f.done()]
        if oldest and not done:
            done = [next(iter(pending))]
        for future in done:
            prepared = self.pool.result(future, pending.pop(future))
            if isinstance(prepared, StoreResult):
                self._fail(prepared.message)
            else:
                self._prepared.append(prepared)
        if done or block:
            self._commit(final=block or (not pending and self._queue.empty()))

    def _commit(self, final: bool = False) -> None:
        """Index what is parsed: in batches (each commit recounts the series and study),
        but never holding an instance back longer than COMMIT_EVERY seconds, so the
        first instances of a series can be served while the rest is still arriving."""
        due = (final or len(self._prepared) >= COMMIT_BATCH
               or time.monotonic() - self._last_commit >= COMMIT_EVERY)
        if not due or not self._prepared:
            return
        batch, self._prepared = self._prepared, []
        self._last_commit = time.monotonic()
        try:
            if self.room is not None:
                self.room(sum(p.received.size for p in batch))
            results = self.cache.commit(batch)
        except Exception as exc:  # index unavailable: the files were taken away again
            self._fail(f"cannot index the cache: {exc.__class__.__name__}")
            return
        for result in results:
            if result.ok or result.reason is FailureReason.DUPLICATE_SOP_INSTANCE:
                self.stored += 1
                self.flight.arrive(result.sop_uid)
            else:
                self._fail(result.message)

    def _fail(self, message: str) -> None:
        log.warning("pull-through cache: %s", message)
        self.errors.append(message)

    def close(self) -> None:
        """Drain the queue and stop the writer; raise if an instance was not cached."""
        self._queue.put(None)
        self._thread.join()
        if self.errors:
            raise UpstreamError(f"{len(self.errors)} instance(s) could not be cached: "
                                f"{self.errors[0]}")
