"""Parse received instances in helper processes, off the caller's GIL.

A pull-through retrieval runs pynetdicom's receive loop (pure Python, ~4 ms per CT
slice) in the same process as the cache writer. Spooling a file (write, hash, fsync)
releases the interpreter lock, but parsing it (~0.8 ms of Python per CT slice) does
not, and stretches the retrieval. So the writer spools in its own threads and hands
only the spooled file's name and digest to a small process pool that parses it and
sends back the index record; placing and indexing stay with the caller. The pool
starts lazily with the ``forkserver`` method, so no thread-holding process is forked.
"""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .local import Prepared, prepare_received
from .protocol import FailureReason, StoreOutcome, StoreResult
from .store import Received


class PreparePool:
    """``prepare(received)`` (parse a spooled file) in ``workers`` processes."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("forkserver"))
            return self._pool

    def prepare(self, received: Received) -> Prepared | StoreResult:
        try:
            return self._executor().submit(prepare_received, received).result()
        except BrokenProcessPool:  # a helper died: start afresh next time, fail this one
            self.close()
            received.path.unlink(missing_ok=True)
            return StoreResult(StoreOutcome.FAILED, reason=FailureReason.PROCESSING_FAILURE,
                               message="a cache helper process died")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
