"""The /cohorts blueprint: views only adapt (parse, one call to the book or a writer, respond).

Errors are JSON ``{"status", "error", "reason", "field"}`` (the gateway's form outside the
protocol families, gateway/errors.py), a bad question 400 with the reason and the part of the
request it is about, an unknown cohort 404.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.http import HTTP_STATUS_CODES

from .. import context
from ..archive.errors import ArchiveError
from ..fhir.outcome import FhirError
from ..links import viewer_studies_url
from . import facets, manifest, zipstream
from .book import Cohort, CohortBook
from .resolve import CohortError

log = logging.getLogger(__name__)
bp = Blueprint("cohorts", __name__, url_prefix="/cohorts")
JSON = "application/json"


class Problem(Exception):
    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.field = status, reason, field


def book() -> CohortBook:
    return current_app.extensions["tcia_cohorts"]


def _json(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers, content_type=JSON)


def _cohort(cohort_id: str) -> Cohort:
    found = book().get(cohort_id)
    if found is None:
        raise Problem(404, f"no cohort {cohort_id[:80]!r}")
    return found


def links(cohort: Cohort, base: str) -> dict[str, str]:
    here = f"{base}/cohorts/{cohort.id}"
    return {"self": here, "manifest": here + "/manifest?format=tcia",
            "metadata": here + "/manifest?format=csv", "download": here + "/download",
            "viewer": here + "/viewer", "group": f"{base}/fhir/Group/{cohort.id}",
            "export": f"{base}/fhir/Group/{cohort.id}/$export"}


@bp.post("")
def create() -> Response:
    try:
        spec = orjson.loads(request.get_data())
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not JSON: {exc}") from exc
    cohort = book().create(spec)
    base = context.public_base()
    body = {**cohort.summary(), "links": links(cohort, base)}
    return _json(body, 201, {"Location": f"{base}/cohorts/{cohort.id}"})


@bp.get("/facets")
def facet_counts() -> Response:
    """Live counts for the home page's builder: one SQL statement (facets.py)."""
    return _json(facets.counts(book(), request.args.to_dict(flat=False)))


@bp.get("/holdings")
def holdings() -> Response:
    """What the archive holds and where its services are (the home page's first part)."""
    settings = context.settings()
    base = context.public_base()
    services = {"DICOMweb": f"{base}/dicomweb", "WADO-URI": f"{base}/wado",
                "FHIR R4": f"{base}/fhir", "CapabilityStatement": f"{base}/fhir/metadata",
                "OpenAPI": f"{base}/openapi.json", "Viewer": f"{base}/viewer/",
                "IHE IID": f"{base}/IHEInvokeImageDisplay",
                "DIMSE": f"{settings.ae_title}@{urlsplit(base).hostname}:"
                         f"{settings.dimse_bind.rpartition(':')[2]}"}
    return _json({**facets.holdings(book()), "services": services})


@bp.get("/<cohort_id>")
def read(cohort_id: str) -> Response:
    cohort = _cohort(cohort_id)
    members = book().series(cohort.id)
    return _json({**cohort.summary(), "links": links(cohort, context.public_base()),
                  "patients": book().patients(cohort.id),
                  "studies": list(dict.fromkeys(m.study_uid for m in members)),
                  "series": [{"uid": m.series_uid, "study": m.study_uid, "patient": m.patient_id,
                              "collection": m.collection, "modality": m.modality,
                              "instances": m.num_instances} for m in members]})


@bp.get("/<cohort_id>/manifest")
def manifest_view(cohort_id: str) -> Response:
    cohort = _cohort(cohort_id)
    kind = request.args.get("format", "tcia")
    if kind not in manifest.FORMATS:
        raise Problem(400, f"format={kind[:40]!r}: use tcia, csv or json", "format")
    layout = zipstream.plan(book(), context.archive(), cohort)
    body, media, suffix = manifest.render(kind, cohort, layout, context.public_base())
    return Response(body, content_type=media, headers={
        "Content-Disposition": f'attachment; filename="cohort-{cohort.id}{suffix}"'})


@bp.route("/<cohort_id>/download", methods=["GET", "HEAD"])
def download(cohort_id: str) -> Response:
    cohort = _cohort(cohort_id)
    layout = zipstream.plan(book(), context.archive(), cohort, fetch=True)
    return zipstream.respond(layout, book(), request.headers.get("Range"),
                             request.headers.get("If-Range"), head=request.method == "HEAD")


@bp.get("/<cohort_id>/viewer")
def viewer(cohort_id: str) -> Response:
    """The bundled viewer opened on the cohort's studies (OHIF takes a comma list)."""
    cohort = _cohort(cohort_id)
    studies = list(dict.fromkeys(m.study_uid for m in book().series(cohort.id)))
    return Response(status=302, headers={
        "Location": viewer_studies_url(context.public_base(), studies)})


@bp.errorhandler(Problem)
def _problem(error: Problem) -> Response:
    return _json({"status": error.status, "error": HTTP_STATUS_CODES.get(error.status, "Error"),
                  "reason": error.reason, "field": error.field}, error.status)


@bp.errorhandler(CohortError)
def _cohort_error(error: CohortError) -> Response:
    return _problem(Problem(400, error.reason, error.field))


@bp.errorhandler(FhirError)
def _fhir_error(error: FhirError) -> Response:
    """A FHIR search in the request that /fhir would refuse, refused the same way."""
    reason = error.message + (f" (parameter {error.expression})" if error.expression else "")
    return _problem(Problem(400 if error.status < 500 else error.status, reason, "fhir"))


@bp.errorhandler(ArchiveError)
def _archive_error(error: ArchiveError) -> Response:
    if error.answer.http >= 500:
        log.warning("archive error %s: %s", error.answer.http, error.message)
    return _problem(Problem(error.answer.http, error.message))


@bp.errorhandler(SQLAlchemyError)
def _database_error(error: SQLAlchemyError) -> Response:
    """The index database did not answer (as /readyz would say): 503, retry later."""
    log.warning("cohorts: index database error %s", error.__class__.__name__)
    return _problem(Problem(503, f"the index database did not answer ({error.__class__.__name__})"))
