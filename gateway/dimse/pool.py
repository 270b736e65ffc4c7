"""Opening associations with clear errors, and a bounded pool that reuses them.

pynetdicom associations are not thread-safe (one DIMSE exchange at a time), and
opening one costs a TCP handshake plus A-ASSOCIATE negotiation of ~85 contexts:
the pool hands each association to one user at a time and keeps idle ones for
``idle_timeout`` seconds (below the ~30 s after which PACSs such as Orthanc drop
idle associations). Every failure becomes an archive error that names the PACS:
down → Unavailable, rejected → UpstreamError, silent → UpstreamTimeout.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from pynetdicom import AE, evt
from pynetdicom.association import Association

from ..archive.errors import ArchiveError, Unavailable, UpstreamError, UpstreamTimeout
from ..config import parse_ae_address
from . import sockets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    """A remote AE: ``AET@host:port``."""

    aet: str
    host: str
    port: int
    kind: str = field(default="PACS", compare=False)  # how messages name it

    @classmethod
    def parse(cls, text: str, what: str = "peer", kind: str = "PACS") -> "Peer":
        return cls(*parse_ae_address(text, what), kind=kind)

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0   # TCP connect
    acse: float = 10.0     # A-ASSOCIATE / A-RELEASE answers
    dimse: float = 60.0    # between two DIMSE messages of one operation

    def apply(self, ae: AE) -> None:
        ae.connection_timeout, ae.acse_timeout, ae.dimse_timeout = self.connect, self.acse, self.dimse


def transient(exc: ArchiveError) -> ArchiveError:
    """Mark an error as worth a retry (peer restarting, stale pooled association)."""
    exc.transient = True  # type: ignore[attr-defined]
    return exc


def is_transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))


def open_association(ae: AE, peer: Peer, contexts: list, *, timeouts: Timeouts,
                     ext_neg: Sequence[Any] = (), handlers: Sequence[tuple] = ()) -> Association:
    """Associate with ``peer`` (max PDU unlimited: PS3.8 D.1 value 0), or raise a named error."""
    opened = threading.Event()
    started = time.monotonic()
    assoc = ae.associate(peer.host, peer.port, contexts=contexts, ae_title=peer.aet, max_pdu=0,
                         ext_neg=list(ext_neg) or None,
                         evt_handlers=[*sockets.HANDLERS, (evt.EVT_CONN_OPEN, lambda _e: opened.set()),
                                       *handlers])
    if assoc.is_established:
        return assoc
    raise _refusal(assoc, peer, ae.ae_title, opened.is_set(), time.monotonic() - started, timeouts)


def _refusal(assoc: Association, peer: Peer, calling: str, connected: bool, elapsed: float,
             timeouts: Timeouts) -> ArchiveError:
    """Why an association did not come up, as the error the HTTP layer maps (503/502/504)."""
    if assoc.is_rejected:  # PS3.8 7.1.1.9: result, source, reason
        rj = assoc.acceptor.primitive
        assert rj is not None  # a rejection carries its A-ASSOCIATE-RJ
        reason = f"{rj.result_str}, {rj.source_str}: {rj.reason_str}"
        if rj.result == 0x02:  # rejected-transient
            return transient(Unavailable(f"{peer.kind} {peer} rejected the association ({reason})"))
        return UpstreamError(f"{peer.kind} {peer} rejected the association from {calling} ({reason})")
    if not connected:
        if elapsed >= timeouts.connect * 0.9:
            return UpstreamTimeout(f"{peer.kind} {peer}: no TCP connection within "
                                   f"{timeouts.connect:g} s")
        return transient(Unavailable(f"{peer.kind} {peer} is unreachable (connection refused)"))
    if elapsed >= timeouts.acse * 0.9:
        return UpstreamTimeout(f"{peer.kind} {peer} did not answer the association request within "
                               f"{timeouts.acse:g} s")
    return transient(UpstreamError(f"{peer.kind} {peer} aborted the association request"))


class AssociationPool:
    """At most ``size`` associations with one peer; each is used by one thread at a time."""

    def __init__(self, ae: AE, peer: Peer, contexts: list, *, timeouts: Timeouts, size: int = 4,
                 idle_timeout: float = 20.0, ext_neg: Sequence[Any] = (),
                 handlers: Sequence[tuple] = ()) -> None:
        self.ae, self.peer, self.contexts = ae, peer, contexts
        self.timeouts, self.size, self.idle_timeout = timeouts, max(1, size), idle_timeout
        self.ext_neg, self.handlers = list(ext_neg), list(handlers)
        self._idle: list[tuple[Association, float]] = []
        self._count = 0  # idle + checked out
        self._cond = threading.Condition()
        self.opened = 0     # associations negotiated (for tests and benchmarks)
        self.checkouts = 0  # times an association was handed out

    @contextmanager
    def checkout(self, wait: float | None = None) -> Iterator[Association]:
        """An established association for the duration of the block. It goes back to
        the pool unless the block failed in a way that leaves its state unknown."""
        assoc = self._acquire(self.timeouts.dimse if wait is None else wait)
        reuse = False
        try:
            yield assoc
            reuse = True
        except ArchiveError as exc:
            reuse = not is_transient(exc)
            raise
        finally:
            self._release(assoc, reuse and assoc.is_established)

    def _acquire(self, wait: float) -> Association:
        deadline = time.monotonic() + wait
        stale: list[Association] = []
        assoc: Association | None
        with self._cond:
            while True:
                stale += self._expire_idle()
                if self._idle:
                    assoc, _t = self._idle.pop()
                    self.checkouts += 1
                    break
                if self._count < self.size:
                    self._count += 1
                    assoc = None
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamTimeout(f"all {self.size} associations with "
                                          f"{self.peer.kind} {self.peer} "
                                          f"stayed busy for {wait:g} s")
                self._cond.wait(remaining)
        for old in stale:
            old.release()
        if assoc is not None:
            return assoc
        try:
            assoc = open_association(self.ae, self.peer, self.contexts, timeouts=self.timeouts,
                                     ext_neg=self.ext_neg, handlers=self.handlers)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self.opened += 1
            self.checkouts += 1
        return assoc

    def _expire_idle(self) -> list[Association]:
        """Drop idle associations that are too old or that the peer closed (lock held)."""
        now = time.monotonic()
        keep: list[tuple[Association, float]] = []
        drop: list[tuple[Association, float]] = []
        for assoc, since in self._idle:
            fresh = assoc.is_established and now - since < self.idle_timeout
            (keep if fresh else drop).append((assoc, since))
        self._idle = keep
        self._count -= len(drop)
        return [a for a, _t in drop if a.is_established]

    def _release(self, assoc: Association, reuse: bool) -> None:
        with self._cond:
            if reuse:
                self._idle.append((assoc, time.monotonic()))
            else:
                self._count -= 1
            self._cond.notify()
        if not reuse and assoc.is_established:
            assoc.abort()  # mid-operation state unknown: never hand it out again

    def close(self) -> None:
        """Release every idle association (A-RELEASE, PS3.8 7.2)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for assoc, _t in idle:
            if assoc.is_established:
                assoc.release()
