"""Seal and parse received instances in helper processes, off the caller's GIL.

A pull-through retrieval runs pynetdicom's receive loop (pure Python, ~2 ms of CPU per
CT slice) in the same process as the cache writer, and the PACS sends the next instance
only after our answer. Hashing a 0.5 MB slice (~0.4 ms), fsync and parsing it (~0.3 ms
of Python) would compete with that loop for the interpreter lock, and so would a second
writer thread: measured on 120 CT slices from Orthanc, two writer threads hashing and
syncing in-process took 810-920 ms, one thread 590-650 ms, one thread that only spools
(a page-cache copy) and leaves hash + fsync + parse to this pool 575-605 ms, against
~420 ms for the C-GET with a handler that stores nothing. So the writer spools, and the
pool seals (:func:`seal`) and parses each file and sends back the index record; placing
and indexing stay with the caller. The pool starts lazily with the ``forkserver``
method, so no thread-holding process is forked.
"""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ...archive.local.archive import Prepared, prepare_received
from ...archive.protocol import FailureReason, StoreOutcome, StoreResult
from ...archive.local.store import seal


def seal_and_prepare(path: Path) -> Prepared | StoreResult:
    """In a helper: hash + fsync a spooled file, then parse it (it is removed on failure)."""
    try:
        received = seal(path)
    except OSError as exc:
        path.unlink(missing_ok=True)
        return StoreResult(StoreOutcome.FAILED, reason=FailureReason.OUT_OF_RESOURCES,
                           message=f"cannot write the cache: {exc.strerror or exc}")
    return prepare_received(received)


def _ready() -> None:
    """A task that only proves a helper is up (and has imported this module)."""


class PreparePool:
    """``submit(path)``: seal and parse a spooled file in one of ``workers`` processes."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                # The fork server imports this module (pydicom, SQLAlchemy, ...) once and
                # helpers fork from it ready: otherwise each helper imports on its first
                # task, and a worker's first cold series took ~600 ms longer (py-spy: the
                # C-GET blocked on a full queue while the helpers imported).
                context.set_forkserver_preload([__name__])
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
            return self._pool

    def warm(self) -> None:
        """Start the helpers now (in the background) if they are not running yet."""
        if self._pool is None:
            executor = self._executor()
            for _ in range(self.workers):
                executor.submit(_ready)

    def submit(self, spooled: Path) -> "Future[Prepared | StoreResult]":
        """Seal and parse ``spooled`` in a helper; collect it with :meth:`result`."""
        try:
            return self._executor().submit(seal_and_prepare, spooled)
        except BrokenProcessPool:  # broken by an earlier death: start afresh once
            self.close()
            return self._executor().submit(seal_and_prepare, spooled)

    def result(self, future: "Future[Prepared | StoreResult]", spooled: Path) -> Prepared | StoreResult:
        try:
            return future.result()
        except BrokenProcessPool:
            return self._died(spooled)

    def _died(self, path: Path) -> StoreResult:
        """A helper died: start afresh next time, fail this instance."""
        self.close()
        path.unlink(missing_ok=True)
        return StoreResult(StoreOutcome.FAILED, reason=FailureReason.PROCESSING_FAILURE,
                           message="a cache helper process died")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
