"""The pull-through cache's state in the index database: the same on every node.

Completion markers (a series, a study's series list) are rows of ``pacs_cache_marks``, so
a series one node retrieved is complete for all. Retrievals of one series take turns under
a lock that spans nodes on PostgreSQL (a session advisory lock; on SQLite, one machine,
the file lock of :class:`CacheState`): two nodes missing the same series cause one C-GET.

The cache is bounded (CACHE_MAX_BYTES). Eviction is by whole series, least recently used
first (``accessed_at``), in two phases: *hide* (the marker says hidden: new requests fetch
the series again) then *purge* (rows, then files). A series is *in use* while it was
accessed within CACHE_PURGE_DELAY: it is neither hidden to make room nor purged. Readers
keep their series in use: a marker check refreshes ``accessed_at`` (lazily, every
``refresh`` seconds, a quarter of the delay at most) and a stream in progress holds a
*lease* (:meth:`reading`) that a background thread renews for as long as it lasts, however
slow the client. Room is made *before* a retrieval's instances are indexed
(:meth:`make_room`), so the cached bytes stay under the cap unless every cached series is in
use (then the cache outgrows the cap by what is being read, and says so in the log).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Column, Float, MetaData, String, Table, Text, delete, func, select, text
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ...dbschema import create_all
from ...archive.errors import UpstreamTimeout
from ...archive.local.archive import LocalArchive
from ...archive.local.schema import instances, series, studies
from ...archive.local.shared import schema_lock
from .pullthrough import CacheState

log = logging.getLogger(__name__)
ACCESS_EVERY = 5.0  # seconds: accessed_at is refreshed lazily (at most; see ``refresh``)

marks_meta = MetaData()
marks = Table(
    "pacs_cache_marks", marks_meta,
    Column("kind", String(8), primary_key=True),
    Column("uid", String(64), primary_key=True),
    Column("content", Text, nullable=False),
    Column("bytes", Float, nullable=False, default=0),
    Column("marked_at", Float, nullable=False),
    Column("accessed_at", Float, nullable=False),
    Column("hidden_at", Float),
)


class Lease:
    """A stream's hold on one series: renewed while this object lives (or until released)."""

    __slots__ = ("uid", "__weakref__")

    def __init__(self, uid: str) -> None:
        self.uid = uid


class SharedCacheState:
    """CacheState's interface (complete, mark, clear, lock) on the index, plus eviction."""

    def __init__(self, cache: LocalArchive, root: Path, *, ttl: float = 0.0,
                 max_bytes: int = 0, high: float = 0.9, low: float = 0.7,
                 purge_delay: float = 300.0) -> None:
        self.cache, self.engine = cache, cache.index.engine
        self.ttl, self.max_bytes, self.purge_delay = ttl, max_bytes, purge_delay
        self.high = min(max(high, 0.01), 1.0)
        self.low = min(max(low, 0.01), self.high)
        self._files = CacheState(root, ttl)  # per-machine locks when the index is SQLite
        # a reader refreshes accessed_at well within the delay that protects it
        self.refresh = min(ACCESS_EVERY, purge_delay / 4) if purge_delay else ACCESS_EVERY
        self._leases: weakref.WeakSet[Lease] = weakref.WeakSet()
        self._leases_lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        with self.engine.begin() as conn:
            schema_lock(conn)
            create_all(conn, marks_meta)

    # ------------------------------------------------------------- markers
    def complete(self, kind: str, uid: str) -> dict[str, Any] | None:
        """The marker's content if ``uid`` is fully cached, not hidden, younger than TTL."""
        with self.engine.connect() as conn:
            row = conn.execute(select(marks.c.content, marks.c.marked_at, marks.c.accessed_at)
                               .where(marks.c.kind == kind, marks.c.uid == uid,
                                      marks.c.hidden_at.is_(None))).first()
            if row is None:
                return None
            now = time.time()
            if self.ttl and now - row.marked_at > self.ttl:
                return None
            if now - row.accessed_at > self.refresh:
                # conditional: a purge holding the row wins, and then this reads as missing
                moved = conn.execute(update(marks).where(
                    marks.c.kind == kind, marks.c.uid == uid, marks.c.hidden_at.is_(None))
                    .values(accessed_at=now)).rowcount
                conn.commit()
                if not moved:
                    return None
        return json.loads(row.content)

    def mark(self, kind: str, uid: str, content: dict[str, Any]) -> None:
        """Complete (and visible again, if it was hidden), after the data is in the cache."""
        now = time.time()
        size = self._series_bytes(uid) if kind == "series" else 0
        values = dict(content=json.dumps(content), bytes=size, marked_at=now, accessed_at=now,
                      hidden_at=None)
        with self.engine.begin() as conn:
            done = conn.execute(update(marks).where(marks.c.kind == kind, marks.c.uid == uid)
                                .values(**values)).rowcount
            if not done:
                try:
                    with conn.begin_nested():
                        conn.execute(marks.insert().values(kind=kind, uid=uid, **values))
                except IntegrityError:
                    conn.execute(update(marks).where(marks.c.kind == kind, marks.c.uid == uid)
                                 .values(**values))

    def clear(self, kind: str, uid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(marks).where(marks.c.kind == kind, marks.c.uid == uid))

    def _series_bytes(self, uid: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.coalesce(func.sum(instances.c.size), 0))
                .select_from(instances.join(series, instances.c.series_pk == series.c.pk))
                .where(series.c.series_uid == uid)).scalar() or 0)

    # ------------------------------------------------------------- the lock
    @contextlib.contextmanager
    def lock(self, uid: str, timeout: float) -> Iterator[None]:
        """One retrieval of ``uid`` at a time on every node (PostgreSQL advisory lock)."""
        if self.engine.dialect.name != "postgresql":
            with self._files.lock(uid, timeout):
                yield
            return
        key = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            deadline = time.monotonic() + timeout
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                if time.monotonic() > deadline:
                    raise UpstreamTimeout(f"series {uid} has been retrieving on another node "
                                          f"for over {timeout:g} s")
                time.sleep(0.05)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    # ------------------------------------------------------------- leases
    def lease(self, uid: str) -> Lease:
        """Hold ``uid`` in use for a stream: its ``accessed_at`` is written now and renewed
        every ``refresh`` seconds until :meth:`release` (or until the lease is dropped)."""
        held = Lease(uid)
        with self._leases_lock:
            self._leases.add(held)
            if self._renewer is None and self.max_bytes:
                self._renewer = threading.Thread(target=self._renew, daemon=True,
                                                 name="pacs-cache-leases")
                self._renewer.start()
        if self.max_bytes:
            self._touch({uid})
        return held

    def release(self, held: Lease) -> None:
        with self._leases_lock:
            self._leases.discard(held)

    def leased(self) -> set[str]:
        with self._leases_lock:
            return {held.uid for held in list(self._leases)}

    def _renew(self) -> None:
        while not self._stop.wait(self.refresh):
            uids = self.leased()
            if uids:
                try:
                    self._touch(uids)
                except Exception:  # the next round tries again (the delay is 4 rounds)
                    log.warning("pull-through cache: leases not renewed", exc_info=True)

    def _touch(self, uids: set[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(marks).where(marks.c.kind == "series", marks.c.uid.in_(uids))
                         .values(accessed_at=time.time()))

    def close(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------- eviction
    def cached_bytes(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(instances.c.size), 0)))
                       .scalar() or 0)

    def make_room(self, incoming: int, keep: str = "") -> None:
        """Before ``incoming`` bytes of series ``keep`` are indexed: if they would pass the
        cap, evict (hide and purge) series not in use, least recently used first."""
        if not self.max_bytes:
            return
        total = self.cached_bytes()
        if total + incoming <= self.max_bytes:
            return
        goal = min(self.low * self.max_bytes, self.max_bytes - incoming)
        self._hide(keep, goal, total)
        self.purge()
        after = self.cached_bytes()
        if after + incoming > self.max_bytes:
            log.warning("pull-through cache: %d bytes cached + %d arriving pass the cap of %d:"
                        " every other series is in use", after, incoming, self.max_bytes)

    def evict(self, keep: str = "") -> tuple[int, int]:
        """Hide LRU series above the high watermark (down to the low one; never ``keep``,
        just retrieved, nor one in use), purge the hidden ones not in use: (hidden, purged)."""
        if not self.max_bytes:
            return 0, 0
        total = self.cached_bytes()
        hidden = 0
        if self._live(total) > self.high * self.max_bytes:
            hidden = self._hide(keep, self.low * self.max_bytes, total)
        return hidden, self.purge()

    def _live(self, total: int) -> float:
        with self.engine.connect() as conn:
            hidden_bytes = float(conn.execute(select(func.coalesce(func.sum(marks.c.bytes), 0))
                                              .where(marks.c.kind == "series",
                                                     marks.c.hidden_at.is_not(None))).scalar() or 0)
        return total - hidden_bytes

    def _hide(self, keep: str, target: float, total: int) -> int:
        """Hide series not in use, LRU first, until the live bytes are at ``target``."""
        live, count = self._live(total), 0
        in_use = time.time() - self.purge_delay
        with self.engine.begin() as conn:
            lru = conn.execute(select(marks.c.uid, marks.c.bytes).where(
                marks.c.kind == "series", marks.c.hidden_at.is_(None), marks.c.uid != keep,
                marks.c.accessed_at < in_use).order_by(marks.c.accessed_at)).all()
            for row in lru:
                if live <= target:
                    break
                conn.execute(update(marks).where(marks.c.kind == "series",
                                                 marks.c.uid == row.uid)
                             .values(hidden_at=time.time()))
                live -= row.bytes
                count += 1
        if count:
            log.info("pull-through cache: %d series hidden (%.0f of %d bytes live)", count,
                     live, self.max_bytes)
        return count

    def purge(self) -> int:
        """Remove hidden series not in use (no read within the delay, no lease): rows
        first, then files (a row never points at a missing file)."""
        limit = time.time() - self.purge_delay
        with self.engine.connect() as conn:
            due = conn.execute(select(marks.c.uid).where(
                marks.c.kind == "series", marks.c.hidden_at.is_not(None),
                marks.c.accessed_at < limit)).scalars().all()
        purged = 0
        leased = self.leased()
        for uid in due:
            if uid in leased:
                continue
            try:
                with self.lock(uid, timeout=0.5):
                    purged += self._purge_one(uid, limit)
            except UpstreamTimeout:
                continue  # being retrieved again right now: it stays
        return purged

    def _purge_one(self, uid: str, limit: float) -> int:
        with self.engine.begin() as conn:
            still = conn.execute(select(marks.c.uid).where(
                marks.c.kind == "series", marks.c.uid == uid, marks.c.hidden_at.is_not(None),
                marks.c.accessed_at < limit).with_for_update()).first()
            if still is None:
                return 0
            pk_study = conn.execute(select(series.c.pk, series.c.study_pk)
                                    .where(series.c.series_uid == uid)).first()
            paths: list[str] = []
            if pk_study is not None:
                paths = list(conn.execute(select(instances.c.path).where(
                    instances.c.series_pk == pk_study.pk)).scalars())
                conn.execute(delete(instances).where(instances.c.series_pk == pk_study.pk))
                conn.execute(delete(series).where(series.c.pk == pk_study.pk))
                _recount_study(conn, pk_study.study_pk)
            conn.execute(delete(marks).where(marks.c.kind == "series", marks.c.uid == uid))
        for path in paths:  # after the commit: no row points at them any more
            try:
                self.cache.files.delete(path)
            except Exception as exc:  # an object left behind is swept as an orphan later
                log.warning("pull-through cache: cannot delete %s: %s", path, exc)
        return 1


def _recount_study(conn: Any, study_pk: int) -> None:
    of = series.c.study_pk == study_pk
    left = conn.execute(select(func.count()).where(of)).scalar()
    conn.execute(update(studies).where(studies.c.pk == study_pk).values(
        num_series=left,
        num_instances=select(func.coalesce(func.sum(series.c.num_instances), 0)).where(of)
        .scalar_subquery(),
        version=studies.c.version + 1))
