"""Cohorts as FHIR Group resources: ``GET /fhir/Group/{id}`` and ``POST /fhir/Group``.

Every cohort (gateway/cohorts) is a Group: ``type=person``, ``actual=true``, its patients as
``member`` references, ``quantity`` their number, the time it was frozen in Bulk Data's
``members-refreshed`` extension. ``POST /fhir/Group`` takes a Bulk Cohort Group (Bulk Data
Access IG 3.0 ``bulk-cohort-group``): one or more ``member-filter`` modifier extensions, each a
FHIR search (``application/x-fhir-query``), ANDed; the cohort is made from them at once and
answered 201 with the Group (its members frozen, the filters kept on it).

The cohort book is found at run time in ``app.extensions["tcia_cohorts"]`` (the cohorts face
sits above this one and offers it), by the :class:`CohortBook` protocol declared here.
"""
from __future__ import annotations

from typing import Any, Protocol

import orjson
from flask import Response, current_app, request

from .outcome import FhirError, invalid, not_found
from .routes import FHIR_JSON, _base, bp

MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
MEMBERS_REFRESHED = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/members-refreshed"
COHORT_URL = "urn:tcia-gateway:fhir:extension:cohort-url"   # the /cohorts resource of a Group
FHIR_QUERY = "application/x-fhir-query"


class CohortBook(Protocol):
    """What this face asks of the cohort book (gateway/cohorts/book.py)."""

    def get(self, cohort_id: str) -> Any: ...

    def patients(self, cohort_id: str) -> list[str]: ...

    def series(self, cohort_id: str) -> list[Any]: ...

    def create(self, spec: Any, *, kind: str | None = None) -> Any: ...


def book() -> CohortBook:
    found = current_app.extensions.get("tcia_cohorts")
    if found is None:
        raise FhirError(501, "not-supported", "Group needs cohorts: the embedded archive with "
                                              "its index beside the FHIR tables")
    return found


def cohort_or_404(cohort_id: str) -> Any:
    found = book().get(cohort_id)
    if found is None:
        raise not_found(f"Group/{cohort_id} is not known")
    return found


def group_resource(cohort: Any, patients: list[str], base: str) -> dict:
    public = base.removesuffix("/fhir")
    body: dict[str, Any] = {
        "resourceType": "Group", "id": cohort.id,
        "meta": {"versionId": "1", "lastUpdated": cohort.created},
        "extension": [{"url": MEMBERS_REFRESHED, "valueDateTime": cohort.created},
                      {"url": COHORT_URL, "valueUrl": f"{public}/cohorts/{cohort.id}"}]}
    if cohort.kind == "group":
        body["modifierExtension"] = [
            {"url": MEMBER_FILTER, "valueExpression": {"language": FHIR_QUERY, "expression": q}}
            for q in cohort.query.get("fhir", [])]
    body.update({"type": "person", "actual": True})
    if cohort.name:
        body["name"] = cohort.name
    body["quantity"] = len(patients)
    if patients:
        body["member"] = [{"entity": {"reference": f"Patient/{pid}"}} for pid in patients]
    return body


@bp.get("/Group/<rid>")
def group_read(rid: str) -> Response:
    cohort = cohort_or_404(rid)
    body = orjson.dumps(group_resource(cohort, book().patients(cohort.id), _base()))
    return Response(body, content_type=FHIR_JSON, headers={"ETag": 'W/"1"',
                                                           "Last-Modified": cohort.created})


@bp.post("/Group")
def group_create() -> Response:
    filters, name = member_filters(_resource())
    try:
        cohort = book().create({"fhir": filters, **({"name": name} if name else {})},
                               kind="group")
    except ValueError as exc:  # the book's CohortError: a filter it cannot answer
        raise invalid(str(exc), getattr(exc, "field", None)) from exc
    base = _base()
    body = orjson.dumps(group_resource(cohort, book().patients(cohort.id), base))
    return Response(body, status=201, content_type=FHIR_JSON,
                    headers={"Location": f"{base}/Group/{cohort.id}/_history/1",
                             "ETag": 'W/"1"'})


def _resource() -> dict:
    try:
        body = orjson.loads(request.get_data())
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("resourceType") != "Group":
        raise invalid("the body must be a Group resource")
    return body


def member_filters(group: dict) -> tuple[list[str], str | None]:
    """The Group's member-filter searches; 422 for a Group this server cannot make."""
    if group.get("type", "person") != "person":
        raise FhirError(422, "not-supported", "only Groups of type person can be made here",
                        expression="Group.type")
    if group.get("member"):
        raise FhirError(422, "not-supported", "Group.member cannot be given: members come from "
                        "member-filter extensions (or POST /cohorts with explicit lists)",
                        expression="Group.member")
    found = []
    for ext in group.get("modifierExtension") or []:
        if not isinstance(ext, dict) or ext.get("url") != MEMBER_FILTER:
            raise FhirError(422, "not-supported", f"unknown modifier extension "
                            f"{str(ext.get('url') if isinstance(ext, dict) else ext)[:200]}",
                            expression="Group.modifierExtension")
        value = ext.get("valueExpression") or {}
        if value.get("language") != FHIR_QUERY or not isinstance(value.get("expression"), str):
            raise invalid(f"member-filter needs a valueExpression in {FHIR_QUERY}",
                          "Group.modifierExtension")
        found.append(value["expression"])
    if not found:
        raise FhirError(422, "not-supported", "a Group is made here from member-filter "
                        "modifier extensions (Bulk Cohort); none was given",
                        expression="Group.modifierExtension")
    name = group.get("name")
    return found, name if isinstance(name, str) else None
