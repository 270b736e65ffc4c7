"""Eviction of fetched IDC series: the bounded cache (CACHE_MAX_BYTES) for BACKEND=idc.

A fetched series is the only copy on this side of the bucket that can be dropped without
losing anything: its study and series rows come from IDC's index and stay (searches keep
answering them, with the index's instance counts), only its instances go and the series is
marked not fetched again, so the next read fetches it anew. Once the cached instances' bytes
pass the high watermark, fetched series go least recently read first (``idc_series.accessed``,
written at most every ACCESS_EVERY seconds per series) until the bytes are under the low one.
A series read within CACHE_PURGE_DELAY is never evicted: that delay is the lease of a stream
that may still be reading its files. Rows go first, files after the commit, so a row never
points at a missing file.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import delete, func, select, update

from ...archive.local.schema import instances, patients, series, studies
from .catalog import idc_series

log = logging.getLogger(__name__)
ACCESS_EVERY = 5.0


class Evictor:
    def __init__(self, archive: Any, *, max_bytes: int, high: float, low: float,
                 lease: float) -> None:
        self.archive, self.engine = archive, archive.index.engine
        self.max_bytes, self.lease = max_bytes, lease
        self.high = min(max(high, 0.01), 1.0)
        self.low = min(max(low, 0.01), self.high)
        self._touched: dict[str, float] = {}

    def touch(self, uid: str) -> None:
        """Note a read of ``uid`` (lazily: one UPDATE per series every ACCESS_EVERY s)."""
        now = time.time()
        if now - self._touched.get(uid, 0.0) < ACCESS_EVERY:
            return
        self._touched[uid] = now
        with self.engine.begin() as conn:
            conn.execute(update(idc_series).where(idc_series.c.series_uid == uid)
                         .values(accessed=now))

    def cached_bytes(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(instances.c.size), 0)))
                       .scalar() or 0)

    def evict(self, keep: str = "") -> int:
        """Series evicted to bring the cache under the low watermark (never ``keep``)."""
        if not self.max_bytes:
            return 0
        live = self.cached_bytes()
        if live <= self.high * self.max_bytes:
            return 0
        limit, count = time.time() - self.lease, 0
        with self.engine.connect() as conn:
            lru = conn.execute(select(idc_series.c.series_uid).where(
                idc_series.c.fetched.is_not(None), idc_series.c.series_uid != keep,
                func.coalesce(idc_series.c.accessed, idc_series.c.fetched) < limit)
                .order_by(func.coalesce(idc_series.c.accessed, idc_series.c.fetched))).scalars().all()
        for uid in lru:
            if live <= self.low * self.max_bytes:
                break
            live -= self._drop(uid)
            count += 1
        if count:
            log.info("IDC cache: %d series evicted (%d of %d bytes left)", count, live,
                     self.max_bytes)
        return count

    def _drop(self, uid: str) -> int:
        return drop_series(self.archive, uid)


def drop_series(archive: Any, uid: str) -> int:
    """``uid``'s instances out of the cache (rows first, files after the commit), its
    series count back to the index's and marked not fetched; the bytes freed."""
    with archive.index.engine.begin() as conn:
        row = conn.execute(select(series.c.pk, series.c.study_pk)
                           .where(series.c.series_uid == uid)).first()
        if row is None:
            return 0
        files = conn.execute(select(instances.c.path, instances.c.size)
                             .where(instances.c.series_pk == row.pk)).all()
        conn.execute(delete(instances).where(instances.c.series_pk == row.pk))
        expected = select(idc_series.c.instances).where(
            idc_series.c.series_uid == uid).scalar_subquery()
        conn.execute(update(series).where(series.c.pk == row.pk).values(
            num_instances=expected, version=series.c.version + 1))
        _recount_study(conn, row.study_pk)  # a fetch cut short had counted part of it
        conn.execute(update(idc_series).where(idc_series.c.series_uid == uid)
                     .values(fetched=None))
    archive.forget(uid)
    for path, _size in files:
        try:
            archive.files.delete(path)
        except Exception as exc:  # an object left behind is swept as an orphan later
            log.warning("IDC cache: cannot delete %s: %s", path, exc)
    return sum(size for _p, size in files)


def _recount_study(conn: Any, study_pk: int) -> None:
    """The study's and its patient's instance counts as the sums of their series'."""
    of_study = series.c.study_pk == studies.c.pk
    conn.execute(update(studies).where(studies.c.pk == study_pk).values(
        num_instances=select(func.coalesce(func.sum(series.c.num_instances), 0))
        .where(of_study).scalar_subquery(), version=studies.c.version + 1))
    patient_pk = select(studies.c.patient_pk).where(studies.c.pk == study_pk).scalar_subquery()
    conn.execute(update(patients).where(patients.c.pk == patient_pk).values(
        num_instances=select(func.coalesce(func.sum(studies.c.num_instances), 0))
        .where(studies.c.patient_pk == patients.c.pk).scalar_subquery()))
