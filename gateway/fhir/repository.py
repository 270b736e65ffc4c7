"""FHIR resources in the index database: pre-serialised JSON plus search columns.

One row per resource (``fhir_resources``: body bytes with meta, the patient it belongs to) and
one row per searchable value (``fhir_index``: token system/code, normalised string, number,
date range). A search is one SELECT over indexed columns with the total as a window count, so
the hot path never parses JSON. Rebuilding a patient's resources keeps versionId and
lastUpdated of those that did not change (idempotent re-import).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import orjson
from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Table, Text, UniqueConstraint, and_, delete, select)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from . import reindex
from . import search as S
from . import sqlsearch as X
from .cache import Generation
from .connections import SqliteConnections
from .extract import index_rows, patient_of, text_rows

log = logging.getLogger(__name__)

metadata = MetaData()

resources_t = Table(
    "fhir_resources", metadata,
    Column("pk", Integer, primary_key=True),
    Column("type", String(40), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("patient_id", String(64)),
    Column("digest", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("type", "id", name="uq_fhir_resources_type_id"),
)
index_t = Table(
    "fhir_index", metadata,
    Column("pk", Integer, primary_key=True),
    Column("res_pk", Integer, ForeignKey("fhir_resources.pk"), nullable=False),
    Column("param", String(40), nullable=False),
    Column("system", String(255)),
    Column("value", String(255)),
    Column("num", Float),
    Column("lo", String(32)),
    Column("hi", String(32)),
)
text_t = Table(  # text search (_content): whole normalised texts, longer than an index value
    "fhir_text", metadata,
    Column("pk", Integer, primary_key=True),
    Column("res_pk", Integer, ForeignKey("fhir_resources.pk"), nullable=False),
    Column("param", String(40), nullable=False),
    Column("value", Text, nullable=False),
)
Index("ix_fhir_text_res", text_t.c.res_pk, text_t.c.param)
meta_t = Table(  # facts about the tables themselves (reindex.py: the index definitions' signature)
    "fhir_meta", metadata,
    Column("key", String(40), primary_key=True),
    Column("value", String(64), nullable=False),
)
Index("ix_fhir_resources_patient", resources_t.c.type, resources_t.c.patient_id, resources_t.c.pk)
Index("ix_fhir_index_value", index_t.c.param, index_t.c.value, index_t.c.res_pk)
Index("ix_fhir_index_res", index_t.c.res_pk, index_t.c.param)
Index("ix_fhir_index_num", index_t.c.param, index_t.c.num)
Index("ix_fhir_index_date", index_t.c.param, index_t.c.lo)


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
        self._named = "colon" if engine.dialect.name == "sqlite" else "pyformat"
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
        try:
            metadata.create_all(self.engine)
        except OperationalError:  # another worker created them at the same moment
            metadata.create_all(self.engine)
        if reindex.ensure_current(self.engine) and self.generation is not None:
            self.generation.bump()  # results cached under the old index are stale
        self._schema_ready = True

    # ------------------------------------------------------------------ write
    def replace_patients(self, patient_ids: Iterable[str], items: Sequence[dict]) -> dict[str, int]:
        """Make the stored resources of these patients exactly ``items`` (unchanged ones kept)."""
        self._ensure_schema()
        pids = sorted(set(patient_ids))
        counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
        now = _now()
        with self.engine.begin() as conn:
            old = {(r.type, r.id): r for r in conn.execute(
                select(resources_t.c.pk, resources_t.c.type, resources_t.c.id, resources_t.c.version,
                       resources_t.c.digest).where(resources_t.c.patient_id.in_(pids)))} if pids else {}
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

    def _insert(self, conn, resource: dict, version: int, now: str, digest: str) -> None:
        meta = {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": now}
        body = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta,
                **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}
        pk = conn.execute(resources_t.insert().values(
            type=resource["resourceType"], id=resource["id"], version=version, last_updated=now,
            patient_id=patient_of(resource), digest=digest, body=orjson.dumps(body))).inserted_primary_key[0]
        write_index(conn, pk, resource)

    # ------------------------------------------------------------------- read
    def read(self, kind: str, rid: str) -> Stored | None:
        self._ensure_schema()
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLS).where(and_(
                resources_t.c.type == kind, resources_t.c.id == rid))).first()
        return Stored(*row) if row else None

    def compile(self, request: S.SearchRequest) -> CompiledSearch:
        """The SQL of a search, built once per search plan: one page with the total as a
        window count, and a COUNT for ``_count=0`` or a page past the end."""
        bind = _Binds(self._named)
        where = where_sql(request.type, request.clauses, bind)
        count_sql = f"SELECT COUNT(*) FROM fhir_resources r WHERE {where}"
        page_sql = None if request.count == 0 else (
            f"SELECT {_SELECT}, COUNT(*) OVER () FROM fhir_resources r WHERE {where} "
            f"ORDER BY {X.order_sql(request.sort, bind, 'r')} "
            f"LIMIT {int(request.count)} OFFSET {int(request.offset)}")
        return CompiledSearch(page_sql, count_sql, dict(bind), request.offset)

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
        conn = self._sqlite.take()
        try:
            cursor = conn.cursor()
            try:
                found = _run(cursor, query)
            finally:
                cursor.close()
        except BaseException:
            self._sqlite.drop(conn)
            raise
        self._sqlite.give(conn)
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


_EMPTY_ROW = {"system": None, "value": None, "num": None, "lo": None, "hi": None}
_COLS = (resources_t.c.type, resources_t.c.id, resources_t.c.version, resources_t.c.last_updated,
         resources_t.c.patient_id, resources_t.c.body)


def write_index(conn, pk: int, resource: dict) -> None:
    """Insert the index and text rows of the stored resource ``pk``."""
    rows = [{**_EMPTY_ROW, "res_pk": pk, **row} for row in index_rows(resource)]
    if rows:
        conn.execute(index_t.insert(), rows)
    texts = [{"res_pk": pk, **row} for row in text_rows(resource)]
    if texts:
        conn.execute(text_t.insert(), texts)


def _delete(conn, pks: list[int]) -> None:
    if pks:
        conn.execute(delete(index_t).where(index_t.c.res_pk.in_(pks)))
        conn.execute(delete(text_t).where(text_t.c.res_pk.in_(pks)))
        conn.execute(delete(resources_t).where(resources_t.c.pk.in_(pks)))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SELECT = "r.type, r.id, r.body, r.patient_id"
_DATE_SQL = {"eq": "(i.lo >= {lo} AND i.hi <= {hi})", "ne": "NOT (i.lo >= {lo} AND i.hi <= {hi})",
             "gt": "i.hi > {hi}", "sa": "i.lo > {hi}", "lt": "i.lo < {lo}", "eb": "i.hi < {lo}",
             "ge": "i.hi >= {lo}", "le": "i.lo <= {hi}"}


class _Binds(dict):
    """Named bind parameters in the driver's style (sqlite3 ``:b0``, psycopg ``%(b0)s``)."""

    def __init__(self, style: str = "colon") -> None:
        super().__init__()
        self.style = style
        self.aliases = 0

    def alias(self, prefix: str) -> str:
        """A table alias no other part of the statement uses."""
        self.aliases += 1
        return f"{prefix}{self.aliases}"

    def __call__(self, value: Any) -> str:
        name = f"b{len(self)}"
        self[name] = value
        return f":{name}" if self.style == "colon" else f"%({name})s"


def where_sql(kind: str, clauses: list[S.Clause], bind: _Binds) -> str:
    """The WHERE clause of a search over ``fhir_resources r`` (clauses ANDed, values ORed)."""
    parts = [f"r.type = {bind(kind)}"] + [_clause_sql(c, bind) for c in clauses]
    return " AND ".join(parts)


def _clause_sql(clause: S.Clause, bind: _Binds, r: str = "r") -> str:
    """One criterion on the resource row aliased ``r``."""
    if X.handles(clause):
        return X.criterion_sql(clause, bind, X.stored(r))
    param = clause.param
    if param.name == "_id":
        return f"{r}.id IN ({', '.join(bind(code) for _s, code in clause.values)})"
    if param.type == "reference" and param.targets == ("Patient",):  # the patient compartment
        if clause.modifier == "missing":
            return f"{r}.patient_id IS NULL" if clause.values[0] else f"{r}.patient_id IS NOT NULL"
        return f"{r}.patient_id IN ({', '.join(bind(v) for v in clause.values)})"
    has = f"EXISTS (SELECT 1 FROM fhir_index i WHERE i.res_pk = {r}.pk AND i.param = {bind(param.name)}"
    if clause.modifier == "missing":
        return f"NOT {has})" if clause.values[0] else f"{has})"
    alternatives = " OR ".join(_value_sql(param.type, clause.modifier, v, bind) for v in clause.values)
    matched = f"{has} AND ({alternatives}))"
    return f"NOT {matched}" if clause.modifier == "not" else matched


def _value_sql(kind: str, modifier: str | None, value: Any, bind: _Binds) -> str:
    if kind == "token":
        system, code = value
        conds = [] if code is S.ANY else [f"i.value = {bind(code)}"]
        if system is not S.ANY:
            conds.append("i.system IS NULL" if system == "" else f"i.system = {bind(system)}")
        return " AND ".join(conds) or "1 = 1"
    if kind == "string":
        if modifier == "exact":
            return f"i.value = {bind(value)}"
        pattern = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = ("%" if modifier == "contains" else "") + pattern + "%"
        return f"i.value LIKE {bind(pattern)} ESCAPE '\\'"
    if kind == "reference":  # to a type other than Patient: system = type, value = id
        target, rid = value
        return f"i.value = {bind(rid)}" + (f" AND i.system = {bind(target)}" if target else "")
    if kind == "date":
        prefix, q_lo, q_hi = value
        return _DATE_SQL[prefix].format(lo=bind(q_lo), hi=bind(q_hi))
    prefix, number, half, system, code = value
    conds = [_number_sql(prefix, number, half, bind)]
    if system:
        conds.append(f"i.system = {bind(system)}")
    if code:
        conds.append(f"i.value = {bind(code)}")
    return " AND ".join(conds)


def _number_sql(prefix: str, number: float, half: float, bind: _Binds) -> str:
    if prefix in ("eq", "ne"):
        inside = f"(i.num >= {bind(number - half)} AND i.num < {bind(number + half)})"
        return inside if prefix == "eq" else f"NOT {inside}"
    if prefix == "ap":
        spread = abs(number) * 0.1
        return f"(i.num >= {bind(number - spread)} AND i.num <= {bind(number + spread)})"
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[prefix]
    return f"i.num {op} {bind(number)}"
