"""Bulk Data Access 2.0 ``$export`` (docs/cohorts.md): system, Patient and Group level.

Kick-off ``GET|POST [base]/$export``, ``/Patient/$export``, ``/Group/{id}/$export`` with
``Prefer: respond-async``: 202 and ``Content-Location`` (the status URL). Polls answer 202 with
``X-Progress`` and ``Retry-After`` while the job runs, then 200 with the manifest
(``transactionTime, request, requiresAccessToken, output[{type,url,count}], error``); DELETE on
the status URL cancels (202) and the job is gone (404). Parameters: ``_outputFormat``
(``application/fhir+ndjson``, ``application/ndjson``, ``ndjson``), ``_since`` (an instant:
stored resources whose ``meta.lastUpdated`` is later; ImagingStudy and Endpoint, built from the
archive with no change time, are left out of a ``_since`` export), ``_type``, ``_typeFilter``
(FHIR searches; several for a type are ORed). A Group export lists the cohort's DICOM series
in the manifest's ``extension`` (with its ZIP and ``.tcia`` manifest), so one export carries
both sides. Jobs run and are kept as exportjob.py says (any worker answers any request).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import parse_qsl

import orjson
from flask import Response, current_app, request, send_file

from .. import context
from ..archive.protocol import Archive
from ..clinical.params import STORED
from . import search as S
from .exportjob import Jobs, Spec
from .group import book, cohort_or_404
from .outcome import FhirError, invalid, not_found
from .routes import FHIR_JSON, _base, _service, bp
from .service import FhirService
from .sqlsearch import Binds, compile_search

FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
PATIENT_TYPES = (*STORED, "ImagingStudy")
SYSTEM_TYPES = (*PATIENT_TYPES, "Endpoint")
DICOM_EXTENSION = "urn:tcia-gateway:bulk:dicom"
EXTENSION = "tcia_export"
_PAGE = 500


def jobs() -> Jobs:
    return current_app.extensions[EXTENSION]


@bp.route("/$export", methods=["GET", "POST"])
def export_system() -> Response:
    return _kick_off(None, SYSTEM_TYPES, None)


@bp.route("/Patient/$export", methods=["GET", "POST"])
def export_patients() -> Response:
    return _kick_off(None, PATIENT_TYPES, None)


@bp.route("/Group/<rid>/$export", methods=["GET", "POST"])
def export_group(rid: str) -> Response:
    cohort = cohort_or_404(rid)
    members = book().series(cohort.id)
    public = context_base().removesuffix("/fhir")
    here = f"{public}/cohorts/{cohort.id}"
    extension = {DICOM_EXTENSION: {
        "cohort": here, "download": here + "/download", "manifest": here + "/manifest?format=tcia",
        "series": [{"SeriesInstanceUID": m.series_uid, "StudyInstanceUID": m.study_uid,
                    "PatientID": m.patient_id, "Collection": m.collection, "Modality": m.modality,
                    "NumberOfImages": m.num_instances,
                    "url": f"{public}/dicomweb/studies/{m.study_uid}/series/{m.series_uid}"}
                   for m in members]}}
    return _kick_off(book().patients(cohort.id), PATIENT_TYPES, extension)


def context_base() -> str:
    return _base()


@bp.route("/$export-poll/<job_id>", methods=["GET"])
def export_poll(job_id: str) -> Response:
    job = jobs().get(job_id)
    if job is None or job.status == "cancelled":
        raise not_found(f"no export job {job_id[:64]}")
    if job.status == "completed" and job.manifest is not None:
        return Response(job.manifest, content_type="application/json")
    if job.status == "failed":
        raise FhirError(500, "exception", job.error or "export failed")
    return Response(status=202, headers={"X-Progress": job.progress, "Retry-After": "1"})


@bp.route("/$export-poll/<job_id>", methods=["DELETE"])
def export_cancel(job_id: str) -> Response:
    job = jobs().get(job_id)
    if job is None or job.status == "cancelled" or not jobs().cancel(job_id):
        raise not_found(f"no export job {job_id[:64]}")
    return Response(status=202)


@bp.get("/$export-file/<job_id>/<name>")
def export_file(job_id: str, name: str) -> Response:
    job = jobs().get(job_id)
    kind = name.removesuffix(".ndjson")
    if job is None or job.status != "completed" or kind not in SYSTEM_TYPES or \
            not name.endswith(".ndjson"):
        raise not_found(f"no export file {name[:64]} in job {job_id[:64]}")
    path = jobs().folder(job_id) / name
    if not path.is_file():
        raise not_found(f"no export file {name[:64]} in job {job_id[:64]}")
    return send_file(path, mimetype="application/fhir+ndjson", conditional=True)


# ----------------------------------------------------------------- kick-off
def _kick_off(patients: list[str] | None, allowed: tuple[str, ...],
              extension: dict | None) -> Response:
    prefer = request.headers.get("Prefer", "")
    if "respond-async" not in prefer.replace(" ", "").split(","):
        raise invalid("$export needs the header Prefer: respond-async (Bulk Data kick-off)",
                      "Prefer")
    params = _params()
    spec = _spec(params, allowed, patients)
    spec.base, spec.extension = _base(), extension
    job_id = jobs().start(context.public_base() + request.full_path.rstrip("?"), spec, _writer())
    return Response(status=202, content_type=FHIR_JSON, headers={
        "Content-Location": f"{_base()}/$export-poll/{job_id}"})


def _params() -> list[tuple[str, str]]:
    """Query parameters, or those of a POSTed Parameters resource (Bulk Data 2.0)."""
    items = list(request.args.items(multi=True))
    if request.method == "POST" and request.get_data():
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError as exc:
            raise invalid(f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise invalid("a POSTed kick-off carries a Parameters resource")
        for p in body.get("parameter") or []:
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(p.get("name"), str) and isinstance(value, str):
                items.append((p["name"], value))
    return items


def _spec(params: list[tuple[str, str]], allowed: tuple[str, ...],
          patients: list[str] | None) -> Spec:
    types: list[str] | None = None
    since = None
    filters: dict[str, list[str]] = {}
    for key, value in params:
        if key == "_outputFormat":
            if value not in FORMATS:
                raise invalid(f"_outputFormat={value[:60]} is not supported: ndjson only",
                              "_outputFormat")
        elif key == "_type":
            types = (types or []) + [t.strip() for t in value.split(",") if t.strip()]
        elif key == "_since":
            since = _instant(value)
        elif key == "_typeFilter":
            for one in value.split(","):
                kind, _, _query = one.partition("?")
                filters.setdefault(kind, []).append(one)
        else:
            raise invalid(f"unknown $export parameter {key[:60]!r}", key)
    wanted = list(dict.fromkeys(types)) if types else list(allowed)
    for kind in wanted + list(filters):
        if kind not in allowed:
            raise invalid(f"type {kind[:60]!r} cannot be exported here (one of "
                          f"{', '.join(allowed)})", "_type" if kind in wanted else "_typeFilter")
    for kind, queries in filters.items():  # parsed now: a bad filter is the kick-off's 400
        if kind not in STORED:
            raise invalid(f"_typeFilter on {kind} is not supported (stored types only)",
                          "_typeFilter")
        for query in queries:
            S.parse(kind, parse_qsl(query.partition("?")[2], keep_blank_values=True))
    if since is not None:
        wanted = [t for t in wanted if t in STORED]
    return Spec(wanted, patients, since, filters)


def _instant(text: str) -> str:
    try:
        when = dt.datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError as exc:
        raise invalid(f"_since={text[:60]} is not a FHIR instant", "_since") from exc
    if when.tzinfo is None:
        raise invalid("_since needs a time zone (a FHIR instant)", "_since")
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# ------------------------------------------------------------------ writing
def _writer() -> Callable[[str, Spec, Path], int]:
    """The job thread's writer, closed over this app's collaborators (no request there)."""
    service = _service()
    archive = current_app.extensions["tcia_gateway"]["archive"]
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def write(kind: str, spec: Spec, target: Path) -> int:
        with app.app_context(), target.open("wb") as out:  # links: PUBLIC_URL in the thread
            if kind == "Endpoint":
                out.write(orjson.dumps(service.imaging.endpoint()) + b"\n")
                return 1
            if kind == "ImagingStudy":
                return _write_studies(service, archive, spec, out)
            return _write_stored(service, kind, spec, out)
    return write


def _chunks(patients: list[str] | None) -> list[list[str] | None]:
    """The patients in pages of _PAGE; ``[None]`` for every patient (a system export)."""
    if patients is None:
        return [None]
    return [patients[i: i + _PAGE] for i in range(0, len(patients), _PAGE)]


def _write_stored(service: FhirService, kind: str, spec: Spec, out: BinaryIO) -> int:
    """One SELECT per chunk of patients (all at once for a system or Patient export)."""
    repository = service.repository
    count = 0
    for chunk in _chunks(spec.patients):
        sql, params = _stored_sql(kind, spec, chunk, repository.bind_style)
        conn = repository.engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(500):
                for (body,) in rows:
                    out.write(bytes(body) + b"\n")
                    count += 1
            cursor.close()
        finally:
            conn.close()
    return count


def _stored_sql(kind: str, spec: Spec, patients: list[str] | None,
                style: str) -> tuple[str, dict]:
    bind = Binds(style)
    where = [f"r.type = {bind(kind)}"]
    if patients is not None:
        where.append(f"r.patient_id IN ({', '.join(bind(p) for p in patients)})")
    if spec.since:
        where.append(f"r.last_updated > {bind(spec.since)}")
    params = dict(bind)
    alternatives = []
    for n, query in enumerate(spec.type_filters.get(kind, [])):
        request = S.parse(kind, parse_qsl(query.partition("?")[2], keep_blank_values=True))
        request.count = 0
        compiled = compile_search(request, style)
        sub = compiled.count.replace("SELECT COUNT(*) FROM fhir_resources r",
                                     "SELECT r.pk FROM fhir_resources r", 1)
        for name in sorted(compiled.params, key=len, reverse=True):
            new = f"f{n}_{name}"
            params[new] = compiled.params[name]
            sub = (sub.replace(f":{name}", f":{new}") if style == "colon"
                   else sub.replace(f"%({name})s", f"%({new})s"))
        alternatives.append(f"r.pk IN ({sub})")
    if alternatives:
        where.append("(" + " OR ".join(alternatives) + ")")
    return (f"SELECT r.body FROM fhir_resources r WHERE {' AND '.join(where)} ORDER BY r.pk",
            params)


def _write_studies(service: FhirService, archive: Archive, spec: Spec, out: BinaryIO) -> int:
    """ImagingStudy pages from the index tables (the same resources /fhir serves)."""
    studies = service.studies
    if studies is None:  # a remote PACS: per patient, through the archive
        found = service.imaging.for_patients(archive, spec.patients or [])
        for resource in found:
            out.write(orjson.dumps(resource) + b"\n")
        return len(found)
    count = 0
    for chunk in _chunks(spec.patients):
        offset = 0
        while True:
            args = [("_count", str(_PAGE)), ("_offset", str(offset))]
            if chunk is not None:
                args.append(("patient", ",".join(chunk)))
            page, total = studies.search(studies.compile(S.parse("ImagingStudy", args)))
            for resource in page:
                out.write(orjson.dumps(resource) + b"\n")
            count += len(page)
            offset += _PAGE
            if not page or offset >= total:
                break
    return count
