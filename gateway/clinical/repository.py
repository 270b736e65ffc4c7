"""FHIR resources in the index database: pre-serialised JSON plus search columns (schema.py).

A search is one SELECT over indexed columns with the total as a window count (its SQL is
built by the FHIR face, gateway/fhir/sqlsearch.py; this module runs it), so the hot path
never parses JSON. Rebuilding a patient's resources keeps versionId and
lastUpdated of those that did not change (idempotent re-import).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson
from sqlalchemy import and_, delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..dbschema import create_all
from . import reindex
from .connections import SqliteConnections
from .extract import patient_of
from .generation import Generation
from .reindex import write_index
from .schema import index_t, meta_t, metadata, resources_t, text_t

__all__ = ["CompiledSearch", "Repository", "Stored", "index_t", "meta_t", "metadata",
           "resources_t", "text_t", "write_index"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Stored:
    type: str
    id: str
    version: int
    last_updated: str
    patient_id: str | None
    body: bytes


class Repository:
    """Read, search and (re)write stored resources; thread-safe, one engine per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Hand-written SQL goes straight to the driver: its own bind-parameter style.
        self.bind_style = "colon" if engine.dialect.name == "sqlite" else "pyformat"
        self.generation = Generation.of(engine)  # tells cached search results of changes
        self._sqlite = SqliteConnections.of(engine)  # search connections outside the pool
        self._schema_ready = False
        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:  # database not up yet: /readyz says so; retried on use
            log.warning("FHIR tables not created at start: %s", exc.__class__.__name__)

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        create_all(self.engine, metadata)  # another worker may create them at the same moment
        if reindex.ensure_current(self.engine) and self.generation is not None:
            self.generation.bump()  # results cached under the old index are stale
        self._schema_ready = True

    # ------------------------------------------------------------------ write
    def replace_patients(self, patient_ids: Iterable[str], items: Sequence[dict],
                         types: Sequence[str] | None = None) -> dict[str, int]:
        """Make the stored resources of these patients exactly ``items`` (unchanged ones kept);
        with ``types``, only their resources of those types (others are left alone)."""
        pids = sorted(set(patient_ids))
        where: Any = resources_t.c.patient_id.in_(pids)
        if types is not None:
            where = and_(where, resources_t.c.type.in_(list(types)))
        return self._replace(where if pids else None, items)

    def replace_shared(self, types: Sequence[str], items: Sequence[dict]) -> dict[str, int]:
        """Make the stored resources of ``types`` outside every patient compartment (a
        collection's ResearchStudy) exactly ``items``."""
        return self._replace(and_(resources_t.c.patient_id.is_(None),
                                  resources_t.c.type.in_(list(types))), items)

    def _replace(self, where: Any, items: Sequence[dict]) -> dict[str, int]:
        self._ensure_schema()
        counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
        now = _now()
        with self.engine.begin() as conn:
            old = {(r.type, r.id): r for r in conn.execute(
                select(resources_t.c.pk, resources_t.c.type, resources_t.c.id, resources_t.c.version,
                       resources_t.c.digest).where(where))} if where is not None else {}
            for resource in items:
                key = (resource["resourceType"], resource["id"])
                digest = hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()
                prior = old.pop(key, None)
                if prior is not None and prior.digest == digest:
                    counts["unchanged"] += 1
                    continue
                version = prior.version + 1 if prior is not None else 1
                if prior is not None:
                    _delete(conn, [prior.pk])
                    counts["updated"] += 1
                else:
                    _delete(conn, list(conn.execute(select(resources_t.c.pk).where(and_(
                        resources_t.c.type == key[0], resources_t.c.id == key[1]))).scalars()))
                    # ^ the same id under another patient, with its search rows
                    counts["created"] += 1
                self._insert(conn, resource, version, now, digest)
            _delete(conn, [r.pk for r in old.values()])
            counts["deleted"] = len(old)
            changed = counts["created"] or counts["updated"] or counts["deleted"]
            if changed and self.generation is not None:
                self.generation.bump()  # fails before the commit rather than leave caches stale
        if changed and self.generation is not None:
            self.generation.bump()  # after the commit: results read meanwhile are dropped too
        return counts

    def _insert(self, conn: Connection, resource: dict, version: int, now: str, digest: str) -> None:
        meta = {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": now}
        body = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta,
                **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}
        inserted = conn.execute(resources_t.insert().values(
            type=resource["resourceType"], id=resource["id"], version=version, last_updated=now,
            patient_id=patient_of(resource), digest=digest, body=orjson.dumps(body))).inserted_primary_key
        assert inserted is not None
        pk = inserted[0]
        write_index(conn, pk, resource)

    # ------------------------------------------------------------------- read
    def read(self, kind: str, rid: str) -> Stored | None:
        self._ensure_schema()
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLS).where(and_(
                resources_t.c.type == kind, resources_t.c.id == rid))).first()
        return Stored(*row) if row else None

    def run(self, query: CompiledSearch) -> tuple[list[tuple], int]:
        """One page of (type, id, body, patient_id) rows and the total. The hot path: the
        driver's own cursor, no SQLAlchemy result machinery (nor its pool, on SQLite)."""
        self._ensure_schema()
        if self._sqlite is not None:
            return self._run_sqlite(query)
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                return _run(cursor, query)
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            if self.engine.dialect.is_disconnect(exc, conn, None):
                conn.invalidate(exc)  # not back into the pool
            raise
        finally:
            conn.close()

    def _run_sqlite(self, query: CompiledSearch) -> tuple[list[tuple], int]:
        pool = self._sqlite
        assert pool is not None
        conn = pool.take()
        try:
            cursor = conn.cursor()
            try:
                found = _run(cursor, query)
            finally:
                cursor.close()
        except BaseException:
            pool.drop(conn)
            raise
        pool.give(conn)
        return found

    def of_patients(self, patient_ids: Iterable[str], types: Iterable[str] | None = None) -> list[Stored]:
        """Every stored resource of these patients (the Patient itself included), stable order."""
        self._ensure_schema()
        pids = list(dict.fromkeys(patient_ids))
        if not pids:
            return []
        stmt = select(*_COLS).where(resources_t.c.patient_id.in_(pids))
        if types is not None:
            stmt = stmt.where(resources_t.c.type.in_(list(types)))
        with self.engine.connect() as conn:
            return [Stored(*r) for r in conn.execute(stmt.order_by(resources_t.c.pk))]

    def patients(self, ids: Iterable[str]) -> list[Stored]:
        self._ensure_schema()
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        with self.engine.connect() as conn:
            return [Stored(*r) for r in conn.execute(select(*_COLS).where(and_(
                resources_t.c.type == "Patient", resources_t.c.id.in_(ids))).order_by(resources_t.c.pk))]


@dataclass(frozen=True, slots=True)
class CompiledSearch:
    page: str | None  # None for _count=0: the total only
    count: str
    params: dict[str, Any]
    offset: int
    total_at: int = 4  # the page's column holding the total; the row is what comes before it


def _run(cursor: Any, query: CompiledSearch) -> tuple[list[tuple], int]:
    if query.page is not None:
        cursor.execute(query.page, query.params)
        rows = cursor.fetchall()
        if rows:
            at = query.total_at
            return [r[:at] for r in rows], rows[0][at]
        if not query.offset:
            return [], 0
    cursor.execute(query.count, query.params)
    return [], cursor.fetchone()[0]


_COLS = (resources_t.c.type, resources_t.c.id, resources_t.c.version, resources_t.c.last_updated,
         resources_t.c.patient_id, resources_t.c.body)


def _delete(conn: Connection, pks: list[int]) -> None:
    if pks:
        conn.execute(delete(index_t).where(index_t.c.res_pk.in_(pks)))
        conn.execute(delete(text_t).where(text_t.c.res_pk.in_(pks)))
        conn.execute(delete(resources_t).where(resources_t.c.pk.in_(pks)))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
