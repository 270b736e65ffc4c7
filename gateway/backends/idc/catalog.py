"""IDC's series index (``idc_index.parquet``) loaded into the gateway's own index tables.

Each series row of the parquet becomes a patient, study and series row of the embedded
archive's index (counts, ModalitiesInStudy and the collection stored as for imported data),
without instances, and an ``idc_series`` row saying where its folder is and whether it has
been fetched. So patient, study and series searches of every face (QIDO-RS, C-FIND, FHIR
ImagingStudy) are the embedded archive's single SQL statements, at once, with no bucket call.

The load runs once per index file and collection list (``idc_meta`` records what was
loaded), under a file lock in the data dir and PostgreSQL's advisory lock, so the gunicorn
workers and nodes starting together load it once.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.engine import Connection, Engine

from ...dbschema import create_all
from ...archive.local.schema import patients, series, studies

log = logging.getLogger(__name__)

idc_tables = MetaData()
idc_series = Table(
    "idc_series", idc_tables,
    Column("series_uid", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False, index=True),
    Column("folder", String(128), nullable=False),  # crdc_series_uuid: the bucket folder
    Column("instances", Integer, nullable=False),
    Column("size_mb", Float),
    Column("fetched", Float),  # time the whole series entered the cache; NULL: not fetched
    Column("accessed", Float),  # last read (lazily), for eviction
)
idc_meta = Table(
    "idc_meta", idc_tables,
    Column("key", String(64), primary_key=True),
    Column("value", String(2048), nullable=False),
)
LOAD_LOCK = 0x1DC_10AD  # pg_advisory_xact_lock key of the index load
COLUMNS = ["collection_id", "PatientID", "PatientSex", "PatientAge", "StudyInstanceUID",
           "StudyDate", "StudyDescription", "SeriesInstanceUID", "Modality", "SeriesNumber",
           "SeriesDescription", "SeriesDate", "BodyPartExamined", "instanceCount",
           "series_size_MB", "crdc_series_uuid", "series_aws_url"]


def default_index() -> Path:
    import idc_index_data
    return Path(idc_index_data.__file__).parent / "idc_index.parquet"


def ensure_loaded(engine: Engine, path: Path, collections: list[str] | None,
                  lock_dir: Path, *, names: dict[str, str]) -> dict[str, Any]:
    """Load ``path`` (only the collection ids ``collections``, if given; ``names``: id →
    the collection's name, as studies.collection records it) unless this exact file and
    selection was loaded already; what was done."""
    create_all(engine, idc_tables)
    _upgrade(engine)
    stat = path.stat()
    wanted = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|" + \
        ",".join(sorted(collections or []))
    with _file_lock(lock_dir / "idc-load.lock"):
        if _loaded(engine) == wanted:
            return {"loaded": False}
        started = time.monotonic()
        counts = _load(engine, path, collections, names)
        _analyze(engine)
        with engine.begin() as conn:
            conn.execute(idc_meta.delete().where(idc_meta.c.key == "index"))
            conn.execute(idc_meta.insert().values(key="index", value=wanted[:2048]))
        counts.update(loaded=True, seconds=round(time.monotonic() - started, 2))
        log.info("IDC index %s loaded: %s", path, counts)
        return counts


def _upgrade(engine: Engine) -> None:
    """``idc_series.accessed`` (added with eviction) on a table made before it."""
    from sqlalchemy import inspect
    if "accessed" not in {c["name"] for c in inspect(engine).get_columns("idc_series")}:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE idc_series ADD COLUMN accessed FLOAT"))


def _analyze(engine: Engine) -> None:
    """Planner statistics after a bulk load (PostgreSQL's autovacuum has not seen the new
    rows yet; SQLite has none until asked): without them ``ModalitiesInStudy=CT`` on the
    full index took 235 ms on PostgreSQL instead of 7.6 (measured)."""
    with engine.begin() as conn:
        for table in ("patients", "studies", "series", "idc_series"):
            conn.execute(text(f"ANALYZE {table}"))


def _loaded(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(select(idc_meta.c.value).where(idc_meta.c.key == "index")).scalar() or ""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_rows(path: Path, collection_ids: list[str] | None) -> dict[str, list[Any]]:
    """The parquet's columns we use, as Python lists (only the given collections)."""
    import pyarrow.parquet as pq
    available = set(pq.read_schema(path).names)
    filters = [("collection_id", "in", collection_ids)] if collection_ids else None
    table = pq.read_table(path, columns=[c for c in COLUMNS if c in available], filters=filters)
    n = table.num_rows
    return {c: table.column(c).to_pylist() if c in available else [None] * n for c in COLUMNS}


def _load(engine: Engine, path: Path, collections: list[str] | None,
          names: dict[str, str]) -> dict[str, Any]:
    cols = read_rows(path, sorted(collections) if collections else None)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOAD_LOCK})
        rows = _Rows(conn)
        for i in range(len(cols["SeriesInstanceUID"])):
            rows.add({c: v[i] for c, v in cols.items()}, names)
        rows.write(conn)
    return {"series": len(rows.series), "studies": len(rows.studies),
            "patients": len(rows.patients)}


def _date(value: str | None) -> str | None:
    return value.replace("-", "")[:8] if value else None


def _cut(value: Any, size: int) -> str | None:
    """A text value within its column, without NULs (IDC's index has descriptions padded
    with NUL bytes, which PostgreSQL text refuses: found loading the full index)."""
    if value in (None, ""):
        return None
    text_ = str(value).replace("\x00", "").strip()
    return text_[:size] or None


def _number(value: Any) -> int | None:
    text_ = str(value or "").strip()
    return int(text_) if text_.lstrip("-").isdigit() and abs(int(text_)) < 2**31 else None


def folder_of(row: dict[str, Any]) -> str:
    """The series folder in the bucket: ``crdc_series_uuid``, else from ``series_aws_url``."""
    if row.get("crdc_series_uuid"):
        return str(row["crdc_series_uuid"])
    url = str(row.get("series_aws_url") or "")
    return url.split("://", 1)[-1].split("/", 1)[-1].removesuffix("*").strip("/")


class _Rows:
    """Patient, study and series rows with their pks assigned here (one bulk INSERT per
    table); what the index holds already is kept as it is."""

    def __init__(self, conn: Connection) -> None:
        self.known_patients = dict(conn.execute(select(patients.c.patient_id, patients.c.pk)).all())
        self.known_studies = dict(conn.execute(select(studies.c.study_uid, studies.c.pk)).all())
        self.known_series = set(conn.execute(select(series.c.series_uid)).scalars())
        self.next = {t.name: (conn.execute(select(func.max(t.c.pk))).scalar() or 0) + 1
                     for t in (patients, studies, series)}
        self.patients: dict[str, dict[str, Any]] = {}
        self.studies: dict[str, dict[str, Any]] = {}
        self.series: list[dict[str, Any]] = []
        self.idc: list[dict[str, Any]] = []
        self.modalities: dict[str, set[str]] = defaultdict(set)

    def _pk(self, table: str) -> int:
        pk = self.next[table]
        self.next[table] += 1
        return pk

    def add(self, r: dict[str, Any], names: dict[str, str]) -> None:
        uid = r["SeriesInstanceUID"]
        if not uid or uid in self.known_series:
            return
        self.known_series.add(uid)
        pid = _cut(r["PatientID"], 64) or ""
        patient_pk = self.known_patients.get(pid)
        if patient_pk is None:
            patient_pk = self.known_patients[pid] = self._pk("patients")
            self.patients[pid] = {"pk": patient_pk, "patient_id": pid, "patient_name": None,
                                  "patient_sex": _cut(r["PatientSex"], 16),
                                  "num_studies": 0, "num_series": 0, "num_instances": 0}
        study_uid = r["StudyInstanceUID"]
        study_pk = self.known_studies.get(study_uid)
        if study_pk is None:
            study_pk = self.known_studies[study_uid] = self._pk("studies")
            collection = names.get(r["collection_id"], r["collection_id"])
            self.studies[study_uid] = {
                "pk": study_pk, "patient_pk": patient_pk, "study_uid": study_uid,
                "study_date": _date(r["StudyDate"]), "patient_age": _cut(r["PatientAge"], 4),
                "study_description": _cut(r["StudyDescription"], 64),
                "collection": _cut(collection, 64), "modalities": "", "num_series": 0,
                "num_instances": 0, "version": 0}
        count = int(r["instanceCount"] or 0)
        self.series.append({
            "pk": self._pk("series"), "study_pk": study_pk, "series_uid": uid,
            "modality": _cut(r["Modality"], 16), "series_number": _number(r["SeriesNumber"]),
            "series_description": _cut(r["SeriesDescription"], 64),
            "series_date": _date(r["SeriesDate"]),
            "body_part_examined": _cut(r["BodyPartExamined"], 16), "num_instances": count,
            "version": 0})
        self.idc.append({"series_uid": uid, "study_uid": study_uid, "folder": folder_of(r),
                         "instances": count, "size_mb": r["series_size_MB"], "fetched": None})
        if study_uid in self.studies:
            study = self.studies[study_uid]
            study["num_series"] += 1
            study["num_instances"] += count
            if r["Modality"]:
                self.modalities[study_uid].add(str(r["Modality"]))

    def write(self, conn: Connection) -> None:
        for study_uid, study in self.studies.items():
            study["modalities"] = "\\".join(sorted(self.modalities[study_uid]))[:128]
        by_pk = {p["pk"]: p for p in self.patients.values()}
        for study in self.studies.values():
            patient = by_pk.get(study["patient_pk"])
            if patient is not None:
                patient["num_studies"] += 1
                patient["num_series"] += study["num_series"]
                patient["num_instances"] += study["num_instances"]
        for table, rows in ((patients, list(self.patients.values())),
                            (studies, list(self.studies.values())), (series, self.series),
                            (idc_series, self.idc)):
            bulk_insert(conn, table, rows)


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows as the driver's own executemany of tuples: on a million series SQLAlchemy's
    per-row parameter processing took longer than SQLite's inserting (profiled: 30 of 51 s)."""
    if not rows:
        return
    names = list(rows[0])
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
           f"VALUES ({', '.join([mark] * len(names))})")
    for i in range(0, len(rows), 20000):
        conn.exec_driver_sql(sql, [tuple(r[n] for n in names) for r in rows[i:i + 20000]])
