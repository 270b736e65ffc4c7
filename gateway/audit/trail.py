"""The audit trail every face writes to: FHIR AuditEvents into the store, PS3.15 A.5
messages to syslog.

`record` only queues the (immutable) `AuditRecord`: a few microseconds, never a disk, the
network or an encoder on the request's time. One worker thread encodes, stores the
AuditEvents in batches (one transaction per batch: a transaction per request cost 2-6 ms
on SQLite, see bench/access_bench.py) and hands the A.5 messages to the syslog sender,
which has its own queue and thread. A full queue, a store failure or an encoder bug is
logged and counted in `stats`: never silent, never the request's failure.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from .dicom import to_dicom_xml
from .events import AuditRecord
from .fhir import to_fhir
from .store import AuditStore
from .syslog import SyslogSender

log = logging.getLogger(__name__)


@dataclass
class TrailStats:
    records: int = 0
    dropped: int = 0          # records refused: the queue was full
    stored: int = 0           # AuditEvents written
    store_failures: int = 0   # AuditEvents a failed batch did not write
    encode_failures: int = 0  # records an encoder could not turn into messages


class AuditTrail:
    def __init__(self, store: AuditStore | None = None, sender: SyslogSender | None = None, *,
                 queue_size: int = 10_000, batch: int = 256) -> None:
        self.store = store
        self.sender = sender
        self.batch = batch
        self.stats = TrailStats()
        self._lock = threading.Lock()
        self._queue: queue.Queue[AuditRecord] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._work, name="audit-trail", daemon=True)
        self._thread.start()

    def record(self, record: AuditRecord) -> bool:
        """Queue `record`; False (counted, logged) when the queue is full."""
        self._count("records")
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            dropped = self._count("dropped")
            if dropped % 1000 == 1:
                log.error("audit queue full (%d): %d records dropped so far",
                          self._queue.maxsize, dropped)
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record was handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        if self.sender is not None:
            self.sender.close(timeout)

    # ---------------------------------------------------------------- worker thread
    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _handle(self, batch: list[AuditRecord]) -> None:
        events: list[dict] = []
        for record in batch:
            try:
                if self.store is not None:
                    events.extend(to_fhir(record))
                if self.sender is not None:
                    for message in to_dicom_xml(record):
                        self.sender.submit(message)
            except Exception:
                self._count("encode_failures")
                log.exception("audit: cannot encode %s %s (request %s)", record.face.value,
                              record.action.value, record.request_id)
        if self.store is None or not events:
            return
        try:
            self._count("stored", self.store.append(events))
        except Exception:
            self._count("store_failures", len(events))
            log.exception("audit: %d AuditEvents not stored (requests %s)", len(events),
                          ", ".join(sorted({r.request_id or "-" for r in batch})))

    def _count(self, name: str, n: int = 1) -> int:
        with self._lock:
            value = getattr(self.stats, name) + n
            setattr(self.stats, name, value)
            return value
