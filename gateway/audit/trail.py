"""The audit trail every face writes to: FHIR AuditEvents into the store, PS3.15 A.5
messages to syslog.

`record` never raises and never waits on a disk or the network: it encodes (about 0.1 ms)
and queues. One writer thread inserts queued AuditEvents in batches (one transaction per
batch: a transaction per request cost ~6 ms on SQLite, see bench/access_bench.py); the
syslog sender has its own queue and thread. A full queue, a store failure or an encoder
bug is logged and counted in `stats`, never silent and never the request's failure.
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
    stored: int = 0
    dropped: int = 0          # the store queue was full
    store_failures: int = 0   # AuditEvents a failed batch did not store
    encode_failures: int = 0


class AuditTrail:
    def __init__(self, store: AuditStore | None = None, sender: SyslogSender | None = None, *,
                 queue_size: int = 10_000, batch: int = 256) -> None:
        self.store = store
        self.sender = sender
        self.batch = batch
        self.stats = TrailStats()
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        if store is not None:
            self._thread = threading.Thread(target=self._write, name="audit-store", daemon=True)
            self._thread.start()

    def record(self, record: AuditRecord) -> None:
        self._count("records")
        try:
            events = to_fhir(record) if self.store is not None else []
            messages = to_dicom_xml(record) if self.sender is not None else []
        except Exception:  # a bug in an encoder must not fail the request it describes
            self._count("encode_failures")
            log.exception("audit: cannot encode %s %s (request %s)", record.face.value,
                          record.action.value, record.request_id)
            return
        for event in events:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                if self._count("dropped") % 1000 == 1:
                    log.error("audit store queue full (%d): %d AuditEvents dropped so far",
                              self._queue.maxsize, self.stats.dropped)
        for message in messages:
            self.sender.submit(message)  # type: ignore[union-attr]

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued AuditEvent was written (or failed); False on timeout."""
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

    def _write(self) -> None:
        assert self.store is not None
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                stored = self.store.append(batch)
                self._count("stored", stored)
            except Exception:
                self._count("store_failures", len(batch))
                log.exception("audit: %d AuditEvents not stored (requests %s)", len(batch),
                              ", ".join(sorted(_request_ids(batch))) or "-")
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _count(self, name: str, n: int = 1) -> int:
        with self._lock:
            value = getattr(self.stats, name) + n
            setattr(self.stats, name, value)
            return value


def _request_ids(events: list[dict]) -> set[str]:
    return {e["what"]["identifier"]["value"] for ev in events for e in ev.get("entity", [])
            if e.get("type", {}).get("code") == "XrequestId"}
