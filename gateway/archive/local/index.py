"""The index database: writes (records from ingest) and lookups by UID.

Searching lives in :mod:`gateway.archive.local.matching`. SQLAlchemy Core only, so the
same statements run on SQLite and PostgreSQL.
"""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from sqlalchemy import (Table, and_, bindparam, case, create_engine, func, or_, select, text, true,
                        update)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ...dbschema import create_all
from ..errors import NotFound, Unavailable
from .ingest import InstanceRecord
from ..protocol import UidPath
from ..scope import EVERYTHING, Scope
from . import migrate
from .schema import instances, metadata, patients, series, sqlite_pragmas, studies
from .scoping import ALL_SHAPES, Shape, params as scope_params, study_conditions
from .shared import schema_lock, shared

log = logging.getLogger(__name__)


class IndexWriteError(Unavailable):
    """The index refused a write: read-only, unreachable, or (``out_of_space``) its disk is full."""

    def __init__(self, message: str, *, out_of_space: bool = False) -> None:
        super().__init__(message)
        self.out_of_space = out_of_space


@dataclass(frozen=True)
class Existing:
    """What the index already holds for a SOPInstanceUID."""

    sha256: str
    path: str
    series_pk: int


@dataclass(frozen=True)
class Pending:
    """A record to index, with its file's place in the store."""

    record: InstanceRecord
    path: str
    replace: Existing | None = None


INSTANCE_COLUMNS = (studies.c.study_uid, series.c.series_uid, instances.c.sop_uid,
                    instances.c.sop_class_uid, instances.c.transfer_syntax, instances.c.path,
                    instances.c.size, instances.c.number_of_frames, instances.c.frames)


class Index:
    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._schema_ready = False
        try:
            self._ensure_schema()
        except SQLAlchemyError as exc:  # e.g. PostgreSQL not up yet: /readyz reports it
            log.warning("index database not reachable at start: %s", exc.__class__.__name__)

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            self._create_tables()
            migrate.upgrade(self.engine)  # idempotent, safe beside another process
            self._schema_ready = True

    def _create_tables(self) -> None:
        with self.engine.begin() as conn:  # one node at a time (PostgreSQL advisory lock)
            schema_lock(conn)
            create_all(conn, metadata)  # another worker may create them at the same moment
            create_all(conn, shared)

    # ------------------------------------------------------------------ reads
    def ping(self) -> None:
        """Raise Unavailable unless the index answers queries and would accept writes."""
        try:
            self._ensure_schema()
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                refusal = _write_refusal(conn, self.engine)
        except SQLAlchemyError as exc:
            raise Unavailable(f"index database unreachable: {exc.__class__.__name__}") from exc
        if refusal:
            raise Unavailable(f"index database not writable: {refusal}")

    def existing(self, sop_uids: Sequence[str]) -> dict[str, Existing]:
        if not sop_uids:
            return {}
        stmt = select(instances.c.sop_uid, instances.c.sha256, instances.c.path,
                      instances.c.series_pk).where(instances.c.sop_uid.in_(list(sop_uids)))
        try:
            with self.engine.connect() as conn:
                return {r.sop_uid: Existing(r.sha256, r.path, r.series_pk)
                        for r in conn.execute(stmt)}
        except SQLAlchemyError as exc:
            raise Unavailable(f"index database unreachable: {_reason(exc)}") from exc

    def paths_known(self, paths: Sequence[str]) -> set[str]:
        """Which of these store paths an instance row points to."""
        known: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(paths), 500):
                chunk = list(paths[i:i + 500])
                known.update(conn.execute(select(instances.c.path).where(
                    instances.c.path.in_(chunk))).scalars())
        return known

    def instance_rows(self, where: UidPath, scope: Scope = EVERYTHING) -> Iterator[Any]:
        """Rows of INSTANCE_COLUMNS under ``where`` that ``scope`` sees, ordered for
        retrieval; NotFound (the same words for hidden and absent) when none."""
        with self.engine.connect() as conn:
            rows = conn.execute(_statement("instances", where, scope),
                                _params(where, scope)).fetchall()
        if not rows:
            raise NotFound(_not_found(where))
        return iter(rows)

    def metadata_rows(self, where: UidPath, scope: Scope = EVERYTHING) -> list[bytes]:
        with self.engine.connect() as conn:
            docs = conn.execute(_statement("metadata", where, scope),
                                _params(where, scope)).scalars().all()
        if not docs:
            raise NotFound(_not_found(where))
        return list(docs)

    def version(self, where: UidPath, scope: Scope = EVERYTHING) -> int | None:
        """Change counter of the series (or study) named by ``where``, None if absent or
        outside ``scope``."""
        kind = "series_version" if where.series else "study_version"
        with self.engine.connect() as conn:
            return conn.execute(_statement(kind, where, scope), _params(where, scope)).scalar()

    def counts(self, scope: Scope = EVERYTHING) -> dict[str, int]:
        """Patients, studies, series and instances that ``scope`` sees (one statement each)."""
        if scope.unrestricted:
            with self.engine.connect() as conn:
                return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                        for t in (patients, studies, series, instances)}
        conds = study_conditions(Shape.of(scope))
        visible = patients.join(studies, studies.c.patient_pk == patients.c.pk)
        below = visible.join(series, series.c.study_pk == studies.c.pk)
        stmts = {"patients": select(func.count(func.distinct(patients.c.pk))).select_from(visible),
                 "studies": select(func.count()).select_from(visible),
                 "series": select(func.count()).select_from(below),
                 "instances": select(func.coalesce(func.sum(series.c.num_instances), 0))
                 .select_from(below)}
        with self.engine.connect() as conn:
            return {name: int(conn.execute(stmt.where(*conds), scope_params(scope)).scalar_one())
                    for name, stmt in stmts.items()}

    def collection_counts(self, scope: Scope = EVERYTHING) -> dict[str | None, dict[str, int]]:
        """Per collection (None: unknown): patients, studies, series, instances that ``scope``
        sees, in one GROUP BY over the studies (their counts are stored)."""
        col = studies.c.collection
        stmt = (select(col, func.count(func.distinct(studies.c.patient_pk)), func.count(),
                       func.coalesce(func.sum(studies.c.num_series), 0),
                       func.coalesce(func.sum(studies.c.num_instances), 0))
                .select_from(studies.join(patients, studies.c.patient_pk == patients.c.pk))
                .where(*study_conditions(Shape.of(scope))).group_by(col).order_by(col))
        with self.engine.connect() as conn:
            return {row[0]: {"patients": int(row[1]), "studies": int(row[2]),
                             "series": int(row[3]), "instances": int(row[4])}
                    for row in conn.execute(stmt, scope_params(scope))}

    def study_collections(self, study_uids: Sequence[str]) -> dict[str, str]:
        """Study UID -> collection for those of ``study_uids`` that have one."""
        if not study_uids:
            return {}
        stmt = select(studies.c.study_uid, studies.c.collection).where(
            studies.c.study_uid.in_(list(study_uids)), studies.c.collection.is_not(None))
        with self.engine.connect() as conn:
            return {uid: name for uid, name in conn.execute(stmt) if name}

    def has_collection(self, name: str) -> bool:
        stmt = select(studies.c.pk).where(studies.c.collection == name).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def outside(self, records: Sequence[InstanceRecord], scope: Scope) -> set[str]:
        """SOPInstanceUIDs of ``records`` a scoped store must refuse: the instance, or the
        study or instance it would join or replace, lies outside ``scope``."""
        refused = {r.sop_uid for r in records if not (
            scope.sees_patient(r.patient["patient_id"])
            and scope.sees_collection(r.study.get("collection")))}
        rest = [r for r in records if r.sop_uid not in refused]
        if not rest:
            return refused
        shape, bind = Shape.of(scope), scope_params(scope)
        frm = patients.join(studies, studies.c.patient_pk == patients.c.pk)
        sops = [r.sop_uid for r in rest]
        visible = case((and_(true(), *study_conditions(shape)), 1), else_=0)
        stmt = (select(studies.c.study_uid, instances.c.sop_uid, visible).select_from(
            frm.join(series, series.c.study_pk == studies.c.pk)
            .outerjoin(instances, and_(instances.c.series_pk == series.c.pk,
                                       instances.c.sop_uid.in_(sops))))
            .where(or_(studies.c.study_uid.in_([r.study_uid for r in rest]),
                       instances.c.sop_uid.is_not(None))))
        with self.engine.connect() as conn:
            foreign = [row for row in conn.execute(stmt, bind) if not row[2]]
        studies_out = {row.study_uid for row in foreign}
        sops_out = {row.sop_uid for row in foreign if row.sop_uid}
        return refused | {r.sop_uid for r in rest
                          if r.study_uid in studies_out or r.sop_uid in sops_out}

    # ----------------------------------------------------------------- writes
    def add(self, items: Sequence[Pending]) -> None:
        """Index ``items`` in one transaction and refresh the derived counts. Raises
        IntegrityError when another writer indexed one of them first, IndexWriteError
        when the database refuses the write."""
        if not items:
            return
        try:
            self._add(items)
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise IndexWriteError(f"index database write failed: {_reason(exc)}",
                                  out_of_space=_out_of_space(exc)) from exc

    def _add(self, items: Sequence[Pending]) -> None:
        with self.engine.begin() as conn:
            pat = _upsert(conn, patients, "patient_id", [i.record.patient for i in items])
            stu = _upsert(conn, studies, "study_uid", [
                {**i.record.study, "patient_pk": pat[i.record.patient["patient_id"]]} for i in items])
            ser = _upsert(conn, series, "series_uid", [
                {**i.record.series, "study_pk": stu[i.record.study_uid]} for i in items])
            touched_series = set(ser.values())
            new_rows, replaced = [], []
            for item in items:
                row = {**item.record.instance, "path": item.path, "metadata": item.record.metadata,
                       "series_pk": ser[item.record.series_uid]}
                if item.replace:
                    touched_series.add(item.replace.series_pk)
                    replaced.append({**row, "b_sop": row["sop_uid"]})
                else:
                    new_rows.append(row)
            if new_rows:
                conn.execute(instances.insert(), new_rows)
            if replaced:
                cols: dict[str, Any] = {k: bindparam(k) for k in replaced[0] if k != "b_sop"}
                conn.execute(update(instances).where(instances.c.sop_uid == bindparam("b_sop"))
                             .values(**cols), replaced)
            _refresh_counts(conn, touched_series)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own first line (``attempt to write a readonly database``), safe to show."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [orig.__class__.__name__])[0][:200]


def _out_of_space(exc: SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    return (getattr(orig, "sqlite_errorname", "") == "SQLITE_FULL"
            or getattr(orig, "sqlstate", "") == "53100")  # PostgreSQL disk_full


def _write_refusal(conn: Connection, engine: Engine) -> str:
    """Why a write would be refused, without writing (a probe must not queue behind writers):
    the SQLite file and its directory must be writable (access(2) also sees read-only
    mounts); PostgreSQL must not be a read-only session or replica, with INSERT granted."""
    if engine.dialect.name == "sqlite":
        url = make_url(str(engine.url))
        if url.query.get("mode") == "ro":
            return "opened read-only (mode=ro)"
        if not url.database or url.database == ":memory:":
            return ""
        path = Path(url.database)
        for p in (path, path.parent, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists() and not os.access(p, os.W_OK):
                return f"{p} is read-only"
        return ""
    if engine.dialect.name == "postgresql":
        ro, standby, grant = conn.execute(text(
            "SELECT current_setting('transaction_read_only'), pg_is_in_recovery(), "
            "has_table_privilege('instances', 'INSERT')")).one()
        if ro == "on" or standby:
            return "the PostgreSQL session is read-only" + (" (a standby)" if standby else "")
        if not grant:
            return "INSERT on instances is not granted"
    return ""


PG_CONNECT_TIMEOUT = 5  # seconds; override with ?connect_timeout=N in GATEWAY_DATABASE_URL


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        target = make_url(url).database
        if target and target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
        sqlite_pragmas(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # A server that accepts but never answers must not hang a worker's start-up or a
    # request: libpq's connect_timeout bounds each attempt, /readyz then says 503.
    args = {"connect_timeout": PG_CONNECT_TIMEOUT} if "connect_timeout" not in url else {}
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8, connect_args=args)


_READ_ORDER = (series.c.series_number, series.c.pk, instances.c.instance_number, instances.c.pk)


def _params(where: UidPath, scope: Scope = EVERYTHING) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in (("study", where.study), ("series", where.series),
                                              ("sop", where.instance)) if v}
    if not scope.unrestricted:
        out.update(scope_params(scope))
    return out


def _statement(kind: str, where: UidPath, scope: Scope = EVERYTHING) -> Any:
    """The read statement of this shape (which UIDs are given, which parts of the scope
    restrict), built at import: building a SELECT costs more than running it on a hot path
    like frames or metadata."""
    return _STATEMENTS[(kind, bool(where.study), bool(where.series), bool(where.instance),
                        Shape.of(scope))]


def _build(kind: str, study: bool, series_: bool, sop: bool, shape: Shape) -> Any:
    conds = study_conditions(shape)
    if kind == "series_version":
        stmt = select(series.c.version).where(series.c.series_uid == bindparam("series"))
        if shape.any:
            stmt = stmt.select_from(series.join(studies, series.c.study_pk == studies.c.pk)
                                    .join(patients, studies.c.patient_pk == patients.c.pk))
        return stmt.where(*conds)
    if kind == "study_version":
        stmt = select(studies.c.version).where(studies.c.study_uid == bindparam("study"))
        if shape.patients:
            stmt = stmt.select_from(studies.join(patients, studies.c.patient_pk == patients.c.pk))
        return stmt.where(*conds)
    columns = INSTANCE_COLUMNS if kind == "instances" else (instances.c.metadata,)
    frm = (instances.join(series, instances.c.series_pk == series.c.pk)
           .join(studies, series.c.study_pk == studies.c.pk))
    if shape.patients:
        frm = frm.join(patients, studies.c.patient_pk == patients.c.pk)
    stmt = select(*columns).select_from(frm).where(*conds)
    if study:
        stmt = stmt.where(studies.c.study_uid == bindparam("study"))
    if series_:
        stmt = stmt.where(series.c.series_uid == bindparam("series"))
    if sop:
        stmt = stmt.where(instances.c.sop_uid == bindparam("sop"))
    return stmt.order_by(*_READ_ORDER)


_STATEMENTS: dict[tuple[str, bool, bool, bool, Shape], Any] = {  # constant: every shape, once
    (kind, study, series_, sop, shape): _build(kind, study, series_, sop, shape)
    for kind in ("instances", "metadata", "series_version", "study_version")
    for study, series_, sop in itertools.product((False, True), repeat=3)
    for shape in ALL_SHAPES}


def _not_found(where: UidPath) -> str:
    parts = [f"{name} {uid}" for name, uid in (("study", where.study), ("series", where.series),
                                               ("instance", where.instance)) if uid]
    return "no such " + ", ".join(parts) if parts else "the archive is empty"


def _insert_ignore(conn: Connection, table: Table, rows: list[dict], key: str) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        conn.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)


def _upsert(conn: Connection, table: Table, key: str, rows: list[dict]) -> dict[str, int]:
    """Insert rows whose key is new (first writer wins); return key → pk for all."""
    unique = list({r[key]: r for r in rows}.values())
    _insert_ignore(conn, table, unique, key)
    keys = [r[key] for r in unique]
    found = conn.execute(select(table.c[key], table.c.pk).where(table.c[key].in_(keys)))
    return {k: pk for k, pk in found}


def _refresh_counts(conn: Connection, series_pks: set[int]) -> None:
    """Recompute counts and ModalitiesInStudy from the rows (idempotent, no drift)."""
    if not series_pks:
        return
    sp = sorted(series_pks)
    n_inst = select(func.count()).where(instances.c.series_pk == series.c.pk).scalar_subquery()
    conn.execute(update(series).where(series.c.pk.in_(sp))
                 .values(num_instances=n_inst, version=series.c.version + 1))
    study_pks = sorted(conn.execute(select(series.c.study_pk).where(series.c.pk.in_(sp))
                                    .distinct()).scalars())
    ser_of = series.c.study_pk == studies.c.pk
    conn.execute(update(studies).where(studies.c.pk.in_(study_pks)).values(
        num_series=select(func.count()).where(ser_of).scalar_subquery(),
        num_instances=select(func.coalesce(func.sum(series.c.num_instances), 0)).where(ser_of)
        .scalar_subquery(),
        version=studies.c.version + 1))
    mods: dict[int, set[str]] = {pk: set() for pk in study_pks}
    for study_pk, modality in conn.execute(
            select(series.c.study_pk, series.c.modality).where(series.c.study_pk.in_(study_pks))
            .distinct()):
        if modality:
            mods[study_pk].add(modality)
    conn.execute(update(studies).where(studies.c.pk == bindparam("b_pk"))
                 .values(modalities=bindparam("b_mods")),
                 [{"b_pk": pk, "b_mods": "\\".join(sorted(m))} for pk, m in mods.items()])
    patient_pks = sorted(conn.execute(select(studies.c.patient_pk).where(
        studies.c.pk.in_(study_pks)).distinct()).scalars())
    st_of = studies.c.patient_pk == patients.c.pk
    conn.execute(update(patients).where(patients.c.pk.in_(patient_pks)).values(
        num_studies=select(func.count()).where(st_of).scalar_subquery(),
        num_series=select(func.coalesce(func.sum(studies.c.num_series), 0)).where(st_of)
        .scalar_subquery(),
        num_instances=select(func.coalesce(func.sum(studies.c.num_instances), 0)).where(st_of)
        .scalar_subquery()))
