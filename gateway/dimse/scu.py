"""The SCU side: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE against one PACS.

Every operation runs on a pooled association, is retried with exponential
backoff when the failure is transient (peer restarting, a pooled association
the peer closed meanwhile), and ends in a value or a named archive error whose
message carries the PACS and the DIMSE status (``describe``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event

from ..archive.errors import ArchiveError, UpstreamError, UpstreamTimeout
from ..config import Settings
from . import contexts as cx
from .pool import AssociationPool, Peer, Timeouts, is_transient, open_association, transient
from ..archive.status import Status, category, describe

log = logging.getLogger(__name__)
T = TypeVar("T")
StoreSink = Callable[[Event], int]


@dataclass(frozen=True)
class ScuOptions:
    calling_aet: str = "TCIAGW"
    timeouts: Timeouts = Timeouts()
    pool_size: int = 4
    idle_timeout: float = 20.0
    retries: int = 2
    backoff: float = 0.25

    @classmethod
    def from_settings(cls, settings: Settings) -> "ScuOptions":
        """From the PACS_* settings."""
        return cls(calling_aet=settings.ae_title,
                   timeouts=Timeouts(settings.pacs_connect_timeout, settings.pacs_acse_timeout,
                                     settings.pacs_dimse_timeout),
                   pool_size=settings.pacs_pool_size, idle_timeout=settings.pacs_idle_timeout,
                   retries=settings.pacs_retries, backoff=settings.pacs_backoff)


@dataclass(frozen=True)
class SubOperations:
    """Final counts of a C-GET / C-MOVE (PS3.4 C.4.2.1.4 / C.4.3.1.3)."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0

    @classmethod
    def of(cls, rsp: Dataset) -> "SubOperations":
        n = lambda kw: int(rsp.get(kw, 0) or 0)  # noqa: E731
        return cls(int(rsp.Status), n("NumberOfCompletedSuboperations"),
                   n("NumberOfFailedSuboperations"), n("NumberOfWarningSuboperations"))


class Scu:
    """One PACS, reached through two bounded pools: Q/R (with C-GET storage roles) and C-STORE."""

    def __init__(self, peer: Peer, options: ScuOptions) -> None:
        self.peer, self.options = peer, options
        self.ae = AE(ae_title=options.calling_aet)
        options.timeouts.apply(self.ae)
        self.stats: Counter[str] = Counter()  # operations asked for, by name (benchmarks, tests)
        self._sinks: dict[int, StoreSink] = {}
        self._sinks_lock = threading.Lock()
        qr_contexts, roles = cx.query_retrieve_requested()
        self.qr = AssociationPool(self.ae, peer, qr_contexts, ext_neg=roles,
                                  handlers=[(evt.EVT_C_STORE, self._on_store)],
                                  timeouts=options.timeouts, size=options.pool_size,
                                  idle_timeout=options.idle_timeout)
        self.storage = AssociationPool(self.ae, peer, cx.store_pool_requested(),
                                       timeouts=options.timeouts, size=options.pool_size,
                                       idle_timeout=options.idle_timeout)
        self._store_pairs = {(c.abstract_syntax, c.transfer_syntax[0]) for c in self.storage.contexts}

    # ------------------------------------------------------------- plumbing
    def _run(self, pool: AssociationPool, what: str, op: Callable[[Association], T]) -> T:
        self.stats[what] += 1
        delay = self.options.backoff
        for attempt in range(self.options.retries + 1):
            try:
                with pool.checkout() as assoc:
                    return op(assoc)
            except ArchiveError as exc:
                if not is_transient(exc) or attempt == self.options.retries:
                    raise
                log.info("%s: %s; retrying in %.2f s", what, exc.message, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _check(self, rsp: Dataset, assoc: Association, what: str, since: float) -> int:
        """The response's status, or the error for a response that never came (PS3.7 9.1)."""
        if rsp is not None and "Status" in rsp:
            return int(rsp.Status)
        if time.monotonic() - since >= self.options.timeouts.dimse * 0.9:
            return_error: ArchiveError = UpstreamTimeout(
                f"{self.peer.kind} {self.peer} sent no {what} response within "
                f"{self.options.timeouts.dimse:g} s")
        else:
            return_error = transient(UpstreamError(
                f"{self.peer.kind} {self.peer} aborted the association during {what}"))
        raise return_error

    def _failure(self, what: str, rsp: Dataset, hint: str = "") -> UpstreamError:
        code = int(rsp.Status)
        comment = str(rsp.get("ErrorComment", "") or "")
        text = f"{self.peer.kind} {self.peer} answered {what} with {describe(code)}"
        text += f" ({comment})" if comment else ""
        return UpstreamError(text + hint, status=code)

    def _on_store(self, event: Event) -> int:
        """EVT_C_STORE on a Q/R association: a C-GET sub-operation (PS3.4 C.4.3.3)."""
        with self._sinks_lock:
            sink = self._sinks.get(id(event.assoc))
        if sink is None:
            return Status.PROCESSING_FAILURE
        return sink(event)

    # ----------------------------------------------------------- operations
    def echo(self) -> float:
        """C-ECHO (PS3.7 9.1.5); seconds it took."""
        def op(assoc: Association) -> float:
            t0 = time.monotonic()
            rsp = assoc.send_c_echo()
            code = self._check(rsp, assoc, "C-ECHO", t0)
            if category(code) != "success":
                raise self._failure("C-ECHO", rsp)
            return time.monotonic() - t0
        return self._run(self.qr, "C-ECHO", op)

    def find(self, identifier: Dataset, root: str = "S") -> list[Dataset]:
        """C-FIND (PS3.4 C.4.1): every pending identifier, once the final status is success."""
        def op(assoc: Association) -> list[Dataset]:
            out: list[Dataset] = []
            since = time.monotonic()
            for rsp, ident in assoc.send_c_find(identifier, cx.FIND_MODELS[root]):
                code = self._check(rsp, assoc, "C-FIND", since)
                since = time.monotonic()
                if category(code) == "pending":
                    if ident is not None:
                        out.append(ident)
                elif category(code) == "success":
                    return out
                else:
                    raise self._failure("C-FIND", rsp)
            raise transient(UpstreamError(
                f"{self.peer.kind} {self.peer} ended C-FIND without a final status"))
        return self._run(self.qr, "C-FIND", op)

    def get(self, identifier: Dataset, sink: StoreSink, root: str = "S") -> SubOperations:
        """C-GET (PS3.4 C.4.3): instances arrive on this association and go to ``sink``."""
        def op(assoc: Association) -> SubOperations:
            with self._sinks_lock:
                self._sinks[id(assoc)] = sink
            try:
                return self._retrieve(assoc.send_c_get(identifier, cx.GET_MODELS[root]), assoc,
                                      "C-GET")
            finally:
                with self._sinks_lock:
                    self._sinks.pop(id(assoc), None)
        return self._run(self.qr, "C-GET", op)

    def move(self, identifier: Dataset, destination: str, root: str = "S", *,
             unknown_hint: str = "", failed_hint: str = "") -> SubOperations:
        """C-MOVE (PS3.4 C.4.2) to ``destination``; the PACS opens its own association to it.
        ``unknown_hint`` is added to a 0xA801 answer, ``failed_hint`` to any other failure
        before the first sub-operation (some PACSs, Orthanc 1.10 among them, answer 0xC000
        when they do not know the destination)."""
        def op(assoc: Association) -> SubOperations:
            return self._retrieve(assoc.send_c_move(identifier, destination, cx.MOVE_MODELS[root]),
                                  assoc, "C-MOVE", unknown_hint, failed_hint)
        return self._run(self.qr, "C-MOVE", op)

    def _retrieve(self, responses: Iterator[tuple[Dataset, Dataset | None]], assoc: Association,
                  what: str, unknown_hint: str = "",
                  failed_hint: str = "") -> SubOperations:
        since = time.monotonic()
        for rsp, _ident in responses:
            code = self._check(rsp, assoc, what, since)
            since = time.monotonic()
            if category(code) == "pending":
                continue
            result = SubOperations.of(rsp)
            if category(code) == "success" and not result.failed:
                return result
            if code == Status.MOVE_DESTINATION_UNKNOWN:
                extra = unknown_hint
            elif result.failed or result.completed:
                extra = (f"; {result.completed} sub-operations completed, {result.failed} "
                         f"failed, {result.warning} with warnings")
            else:
                extra = failed_hint
            raise self._failure(what, rsp, extra)
        raise transient(UpstreamError(
            f"{self.peer.kind} {self.peer} ended {what} without a final status"))

    def store(self, path: Path, sop_class: str, transfer_syntax: str) -> int:
        """C-STORE one file (PS3.4 B.2.2); returns the status (success or warning)."""
        def op(assoc: Association) -> int:
            t0 = time.monotonic()
            rsp = assoc.send_c_store(path)
            code = self._check(rsp, assoc, "C-STORE", t0)
            if category(code) == "failure":
                raise self._failure("C-STORE", rsp)
            return code
        if (sop_class, transfer_syntax) in self._store_pairs:
            return self._run(self.storage, "C-STORE", op)
        return self._once("C-STORE", cx.storage_requested([(sop_class, transfer_syntax)]), op)

    def _once(self, what: str, contexts: list, op: Callable[[Association], T]) -> T:
        """An operation on a one-off association (contexts the pools do not propose)."""
        self.stats[what] += 1
        assoc = open_association(self.ae, self.peer, contexts, timeouts=self.options.timeouts)
        try:
            return op(assoc)
        finally:
            if assoc.is_established:
                assoc.release()

    def close(self) -> None:
        self.qr.close()
        self.storage.close()
