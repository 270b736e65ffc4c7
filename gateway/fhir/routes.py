"""The /fhir blueprint: views only adapt (negotiate, one service call, respond).

Every error becomes an OperationOutcome: unknown type 404, unknown or malformed parameter 400,
unknown id 404, unsupported interaction 405 (with Allow), unacceptable format 406.
"""
from __future__ import annotations

import logging
import re

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from .. import context
from ..version import __version__
from ..archive.errors import ArchiveError
from ..access import AccessError
from ..access.policy import Permit, Policy
from .outcome import FhirError, error_body, not_found, not_supported
from ..clinical.resources import is_resource_type
from . import auditevents, smart
from .service import EVERYONE, Caller, FhirService

log = logging.getLogger(__name__)
bp = Blueprint("fhir", __name__, url_prefix="/fhir")
FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir",
                        "json", "text/json", "*/*", "application/*", "fhir+json"})
NDJSON_VIEWS = frozenset({"fhir.export_file"})
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _service() -> FhirService:
    return current_app.extensions["tcia_fhir"]


def _base() -> str:
    """Absolute base of our FHIR links: PUBLIC_URL, or the proxy's view when TRUST_PROXY."""
    return context.public_base() + "/fhir"


def _lenient() -> bool:
    prefer = request.headers.get("Prefer")
    if not prefer:
        return False
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(";") + prefer.split(","))


def _args() -> list[tuple[str, str]]:
    items = list(request.args.items(multi=True))
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        items += list(request.form.items(multi=True))
    return items


def _may_have(name: bytes) -> bool:
    """Whether the query string can carry parameter ``name`` (as is, or percent-encoded): a
    search answered from its plan then never parses the query string (plan.py)."""
    query = request.query_string
    return name in query or b"%" in query


def _respond(body: bytes, status: int = 200, headers: dict | None = None) -> Response:
    if _may_have(b"_pretty") and request.args.get("_pretty") == "true":
        body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    return Response(body, status=status, headers=headers, content_type=FHIR_JSON)


@bp.before_request
def _negotiate() -> None:
    """JSON only: `_format` or Accept asking for anything else is 406 (R4 http 3.1.0.1.10)."""
    if request.endpoint in NDJSON_VIEWS:  # Bulk Data files: application/fhir+ndjson
        return
    wanted = request.args.get("_format") if _may_have(b"_format") else None
    if wanted is not None and wanted.split(";")[0].strip() not in JSON_TYPES:
        raise FhirError(406, "not-supported", f"_format={wanted} is not supported: JSON only",
                        expression="_format")
    accept = request.headers.get("Accept")
    if accept and wanted is None and accept not in JSON_TYPES:  # one plain JSON type: fine
        ranges = [part.split(";")[0].strip() for part in accept.split(",")]
        if not any(r in JSON_TYPES for r in ranges):
            raise FhirError(406, "not-supported", f"Accept: {accept} is not supported: JSON only")


def _caller() -> Caller:
    """The limits the access guard found for this request (docs/security.md)."""
    policy = context.policy()
    if policy is None:  # AUTH_MODE=off: one lookup, no request-context read
        return EVERYONE
    state = context.guarded()
    permit = state.permit if state is not None else None
    if state is None or permit is None:
        return EVERYONE
    known = state.derived.get("fhir.caller")  # one per decision (guard/memo.py)
    if known is None:
        known = state.derived["fhir.caller"] = _new_caller(policy, permit)
    return known


def _new_caller(policy: Policy, permit: Permit) -> Caller:
    decided: dict[str, bool] = {}

    def may_read(kind: str) -> bool:  # included and $everything resources: scope, no category
        if kind not in decided:
            try:
                decided[kind] = policy.authorize(permit.principal, kind, "r").categories is None
            except AccessError:
                decided[kind] = False
        return decided[kind]
    return Caller(permit.patient, permit.categories, may_read,
                  policy.hidden_collections(permit.principal))


def _audit_store() -> object | None:
    return current_app.extensions["tcia_gateway"].get("audit_store")


@bp.get("/metadata")
def metadata() -> Response:
    security = smart.security(context.policy())
    return _respond(_service().capability(_base(), __version__, security,
                                          audit=_audit_store() is not None))


@bp.get("/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """SMART App Launch 2.x discovery; only where tokens are checked (AUTH_MODE not off)."""
    policy = context.policy()
    if policy is None:
        raise not_found("this server does not check tokens (AUTH_MODE=off)")
    return Response(orjson.dumps(smart.configuration(policy)), content_type="application/json")


@bp.get("/AuditEvent")
def audit_search() -> Response:
    store = _audit_store()
    if store is None:
        raise not_found("the audit trail is off (AUTH_MODE=off and no AUDIT_SYSLOG)")
    return _respond(auditevents.search(store, _args(), _base()))  # type: ignore[arg-type]


@bp.get("/<kind>")
def search_type(kind: str) -> Response:
    # GET: the raw query string names the plan; a POST form body is part of the search.
    raw = request.query_string if request.method != "POST" else None
    found = _service().search(context.archive(), kind, _args, base=_base(), lenient=_lenient(),
                              raw_query=raw, caller=_caller())
    context.touched(patients=found.patients)
    return _respond(found.body)


@bp.post("/<kind>/_search")
def search_post(kind: str) -> Response:
    return search_type(kind)


@bp.get("/<kind>/<rid>")
def read(kind: str, rid: str) -> Response:
    found = _service().read(context.archive(), kind, rid, _caller())
    context.touched(patients=[found.patient_id])
    etag = f'W/"{found.version}"'
    headers = {"ETag": etag}
    if found.last_updated:
        headers["Last-Modified"] = found.last_updated
    if _none_match(request.headers.get("If-None-Match"), found.version):
        return Response(status=304, headers=headers)
    return _respond(found.body, headers=headers)


def _none_match(header: str | None, version: str) -> bool:
    """If-None-Match names this version, or ``*`` (any current one): 304 (RFC 9110 13.1.2;
    weak comparison, as FHIR's ETags are weak)."""
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or f'"{version}"' in tags


@bp.get("/Patient/<rid>/$everything")
def everything(rid: str) -> Response:
    body = _service().everything(context.archive(), rid, _args(), base=_base(),
                                 lenient=_lenient(), caller=_caller())
    context.touched(patients=[rid])
    return _respond(body)


@bp.route("/", defaults={"rest": ""}, methods=ALL_METHODS)
@bp.route("/<path:rest>", methods=ALL_METHODS)
def unsupported(rest: str) -> Response:
    """Anything no view above takes: a path that names no FHIR interaction (404, as is an
    unknown type) or an interaction this read-only server lacks (405 with Allow)."""
    parts = [p for p in rest.split("/") if p]
    kind = interaction(parts)
    if kind is None or request.method in ("GET", "HEAD") and kind in SERVED_BY_GET:
        raise not_found(f"No FHIR interaction at /fhir/{rest[:200]}")  # e.g. a trailing /
    if kind not in ("system", "metadata") and not parts[0].startswith(("$", "_")):
        FhirService.check_type(parts[0])
    raise not_supported(405, f"{request.method} /fhir/{rest[:200]} is not supported: this server "
                             "is read-only (capabilities, read, search-type, Patient/$everything; "
                             "no history, batch or transaction)").with_headers(
        {"Allow": "POST" if kind == "search" else "GET"})


SERVED_BY_GET = frozenset({"system", "metadata", "type", "instance"})  # or not at all
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # R4 datatypes: id


def interaction(parts: list[str]) -> str | None:
    """Which FHIR RESTful interaction a path names (R4 http 3.1.0), or None when it names
    none: ``Patient/../..`` is no resource, so no method is allowed on it."""
    if not parts:
        return "system"  # batch/transaction, history, search-system
    head, rest = parts[0], parts[1:]
    if head == "metadata":
        return "metadata" if not rest else None
    if head in ("_history", "_search") or head.startswith("$"):
        return "system" if not rest else None
    if not rest:
        return "type"
    if rest[0] == "_search" or rest[0] == "_history" or rest[0].startswith("$"):
        return {"_search": "search", "_history": "history"}.get(rest[0], "operation") \
            if len(rest) == 1 else None
    if not _ID.match(rest[0]) or rest[0].strip(".") == "":
        return None
    if len(rest) == 1:
        return "instance"
    if rest[1] == "_history" and len(rest) <= 3:
        return "history"
    if rest[1].startswith("$") and len(rest) == 2:
        return "operation"
    if len(rest) == 2 and is_resource_type(rest[1]):
        return "compartment"
    return None


@bp.errorhandler(FhirError)
def _fhir_error(error: FhirError) -> Response:
    return Response(error_body(error), status=error.status, headers=error.headers,
                    content_type=FHIR_JSON)


@bp.errorhandler(ArchiveError)
def _archive_error(error: ArchiveError) -> Response:
    """The error kind's own answer (gateway/archive/errors.py), as an OperationOutcome."""
    if error.answer.http >= 500:
        log.warning("archive error %s: %s", error.answer.http, error.message)
    return _fhir_error(FhirError(error.answer.http, error.answer.fhir, error.message))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _fhir_error(FhirError(error.code or 500, "processing", error.description or error.name))


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    log.exception("FHIR request failed")
    return _fhir_error(FhirError(500, "exception", f"internal error: {error.__class__.__name__}"))
