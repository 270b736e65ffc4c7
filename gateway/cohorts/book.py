"""The cohort book: makes cohorts (freezing their series), reads them back.

A cohort is frozen when it is made: the series the question matched at that moment, in
download order (patient, study date, study, series number), with each one's study, patient,
collection and number of instances, and its patients (also Patients the question matched that
have no images). Later changes to the archive never change which series a cohort has.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..archive.protocol import Archive
from ..cache import BoundedCache
from ..fhir.service import FhirService
from ..synth.layout import LicenseFacts
from . import nbia, resolve
from .schema import cohorts_t, crc_t, ensure, patients_t, pg_insert, series_t

log = logging.getLogger(__name__)
UNKNOWN_COLLECTION = "Unknown"
_SERIES_SQL = (
    "SELECT se.series_uid, s.study_uid, p.patient_id, se.modality, se.num_instances, "
    "(SELECT i.metadata FROM instances i WHERE i.series_pk = se.pk "
    " ORDER BY i.instance_number, i.pk LIMIT 1), "
    "(SELECT SUM(i.size) FROM instances i WHERE i.series_pk = se.pk), s.collection "
    "FROM series se JOIN studies s ON s.pk = se.study_pk JOIN patients p ON p.pk = s.patient_pk "
    "WHERE {where} ORDER BY p.patient_id, s.study_date, s.study_uid, se.series_number, se.pk")


@dataclass(frozen=True)
class Member:
    """A frozen series of a cohort."""

    series_uid: str
    study_uid: str
    patient_id: str
    collection: str
    modality: str | None
    num_instances: int


@dataclass(frozen=True)
class Cohort:
    id: str
    created: str
    kind: str
    query: Any
    name: str | None
    num_patients: int
    num_studies: int
    num_series: int
    num_instances: int
    size: int

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "kind": self.kind, "query": self.query,
                "name": self.name, "counts": {
                    "patients": self.num_patients, "studies": self.num_studies,
                    "series": self.num_series, "instances": self.num_instances,
                    "bytes": self.size}}


class CohortBook:
    """Cohorts in the index database; ``fhir`` parses and compiles the FHIR searches."""

    def __init__(self, engine: Engine, fhir: FhirService, archive: Archive) -> None:
        self.engine = engine
        self.fhir = fhir
        self.archive = archive
        self._licences: BoundedCache[str, tuple[LicenseFacts | None]] = BoundedCache(64)
        self._displays: BoundedCache[str, str] = BoundedCache(1024)
        self._ready = False
        try:
            self.ready()
        except SQLAlchemyError as exc:  # database not up yet: /readyz says so; retried on use
            log.warning("cohort tables not created at start: %s", exc.__class__.__name__)

    def ready(self) -> None:
        """The tables exist (created once per process, on first use if not at start)."""
        if not self._ready:
            ensure(self.engine)
            self._ready = True

    def create(self, spec: Any, *, kind: str | None = None) -> Cohort:
        """Freeze the answer to ``spec`` (resolve.py); CohortError/FhirError when it is bad."""
        self.ready()
        found = resolve.conditions(spec, self.fhir, self.archive)
        where = " AND ".join(found.where) or "1 = 1"
        with self._cursor() as cursor:
            cursor.execute(_SERIES_SQL.format(where=where), found.params)
            rows = cursor.fetchall()
            extra: list[str] = []
            if found.patients and not found.imaging_only:
                conds = " AND ".join(c.replace("{pid}", "pp.id") for c in found.patients)
                cursor.execute("SELECT pp.id FROM fhir_resources pp WHERE pp.type = 'Patient' "
                               f"AND {conds} ORDER BY pp.id", found.params)
                extra = [r[0] for r in cursor.fetchall()]
        members = [Member(r[0], r[1], r[2], r[7] or collection_of(r[5]), r[3], int(r[4] or 0))
                   for r in rows]
        if not any(k in spec for k in ("fhir", "qido", "facets")):
            _check_listed(spec, members, extra)
        patients = sorted({m.patient_id for m in members} | set(extra))
        kind = kind or next((k for k in ("fhir", "qido", "facets") if k in spec), "explicit")
        return self._store(spec, kind, members, patients, sum(int(r[6] or 0) for r in rows))

    def _store(self, spec: dict, kind: str, members: list[Member], patients: list[str],
               size: int) -> Cohort:
        cohort = Cohort(
            id=str(uuid.uuid4()), created=_now(), kind=kind,
            query={k: v for k, v in spec.items() if k != "name"},
            name=spec.get("name") if isinstance(spec.get("name"), str) else None,
            num_patients=len(patients), num_studies=len({m.study_uid for m in members}),
            num_series=len(members), num_instances=sum(m.num_instances for m in members),
            size=size)
        with self.engine.begin() as conn:
            conn.execute(insert(cohorts_t).values(
                id=cohort.id, created=cohort.created, kind=kind,
                query=orjson.dumps(cohort.query).decode(), name=cohort.name,
                num_patients=cohort.num_patients, num_studies=cohort.num_studies,
                num_series=cohort.num_series, num_instances=cohort.num_instances, size=size))
            if members:
                conn.execute(insert(series_t), [
                    {"cohort_id": cohort.id, "position": n, "series_uid": m.series_uid,
                     "study_uid": m.study_uid, "patient_id": m.patient_id,
                     "collection": m.collection, "modality": m.modality,
                     "num_instances": m.num_instances} for n, m in enumerate(members)])
            if patients:
                conn.execute(insert(patients_t), [
                    {"cohort_id": cohort.id, "position": n, "patient_id": pid}
                    for n, pid in enumerate(patients)])
        return cohort

    def get(self, cohort_id: str) -> Cohort | None:
        self.ready()
        with self.engine.connect() as conn:
            row = conn.execute(select(cohorts_t).where(cohorts_t.c.id == cohort_id)).first()
        if row is None:
            return None
        return Cohort(row.id, row.created, row.kind, orjson.loads(row.query), row.name,
                      row.num_patients, row.num_studies, row.num_series, row.num_instances,
                      row.size)

    def series(self, cohort_id: str) -> list[Member]:
        self.ready()
        with self.engine.connect() as conn:
            rows = conn.execute(select(
                series_t.c.series_uid, series_t.c.study_uid, series_t.c.patient_id,
                series_t.c.collection, series_t.c.modality, series_t.c.num_instances)
                .where(series_t.c.cohort_id == cohort_id).order_by(series_t.c.position))
            return [Member(*r) for r in rows]

    def patients(self, cohort_id: str) -> list[str]:
        self.ready()
        with self.engine.connect() as conn:
            return list(conn.execute(select(patients_t.c.patient_id).where(
                patients_t.c.cohort_id == cohort_id).order_by(patients_t.c.position)).scalars())

    def licence(self, collection: str) -> LicenseFacts | None:
        """A collection's licence and citation (nbia.licence_facts), looked up once."""
        return self._licences.get_or_put(collection, lambda: (nbia.licence_facts(collection),))[0]

    def condition_display(self, code: str) -> str:
        """The display of a SNOMED CT Condition code as the mapping wrote it (looked up once)."""
        return self._displays.get_or_put(code, lambda: self._display(code))

    def _display(self, code: str) -> str:
        with self.engine.connect() as conn:
            body = conn.execute(text(
                "SELECT r.body FROM fhir_resources r JOIN fhir_index i ON i.res_pk = r.pk "
                "WHERE r.type = 'Condition' AND i.param = 'code' AND i.value = :code "
                "ORDER BY r.pk LIMIT 1"), {"code": code}).scalar()
        if body is None:
            return code
        resource = orjson.loads(bytes(body))
        for coding in (resource.get("code") or {}).get("coding", []):
            if coding.get("code") == code and coding.get("display"):
                return str(coding["display"])
        return str((resource.get("code") or {}).get("text") or code)

    def crcs(self, digests: list[str]) -> dict[str, int]:
        """Known CRC-32s of stored bytes by their SHA-256."""
        self.ready()
        found: dict[str, int] = {}
        with self.engine.connect() as conn:
            for at in range(0, len(digests), 500):
                rows = conn.execute(select(crc_t.c.sha256, crc_t.c.crc32).where(
                    crc_t.c.sha256.in_(digests[at: at + 500])))
                found.update({r[0]: int(r[1]) for r in rows})
        return found

    def keep_crcs(self, crcs: dict[str, int]) -> None:
        """Remember CRCs computed while sending (a row already there is left as it is)."""
        self.ready()
        if not crcs:
            return
        dialect = sqlite_insert if self.engine.dialect.name == "sqlite" else pg_insert()
        rows = [{"sha256": k, "crc32": v} for k, v in crcs.items()]
        with self.engine.begin() as conn:
            conn.execute(dialect(crc_t).on_conflict_do_nothing(), rows)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """The driver's cursor: the compiled FHIR SQL is in its own bind style."""
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            conn.close()


def collection_of(metadata: Any) -> str:
    """The TCIA collection a series belongs to, as TCIA stamps it on every file: Clinical Trial
    Protocol ID (0012,0020), else the CTP private Project Name (0013,xx10)."""
    if metadata is None:
        return UNKNOWN_COLLECTION
    doc = orjson.loads(bytes(metadata))
    for tag in ("00120020", "00131010"):
        value = (doc.get(tag) or {}).get("Value")
        if value and isinstance(value[0], str) and value[0].strip():
            return value[0].strip()
    return UNKNOWN_COLLECTION


def _check_listed(spec: dict, members: list[Member], extra: list[str]) -> None:
    """Every listed identifier must name something: a typo is a 400, not a smaller cohort."""
    known = {"patients": {m.patient_id for m in members} | set(extra),
             "studies": {m.study_uid for m in members},
             "series": {m.series_uid for m in members}}
    for key in ("patients", "studies", "series"):
        missing = [v for v in spec.get(key, []) if v not in known[key]]
        if missing:
            raise resolve.CohortError(f"{key}: not in this archive: {', '.join(missing[:5])}"
                                      + (" …" if len(missing) > 5 else ""), key)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
