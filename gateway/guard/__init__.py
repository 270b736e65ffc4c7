"""The access guard: one `before_request` hook consults the one policy for every route.

For each request: the endpoint's rule (table.py), the bearer token (RFC 6750 2.1 only;
a token in the query string or a form body is refused), the caller (`Policy.authenticate`),
what it may do (`Policy.authorize`), and then the request's scope: the patient compartment
of a `patient/` token and the restricted collections it may not see. DICOMweb reads the
narrowed archive through `context.archive()`; FHIR reads `context.permit()`. Refusals are
answered in the face's own form (FHIR OperationOutcome, DICOMweb JSON with the reason) with
the RFC 6750 challenge. With AUTH_MODE=off nothing is installed (the gateway as before),
unless AUDIT_SYSLOG asks for the audit trail.
"""
from __future__ import annotations

import logging

import orjson
from flask import Flask, Request, Response, g, request

from ..access import AccessError, Policy, build_policy
from ..access.answers import dicomweb_answer, fhir_answer
from ..access.policy import AuthMode, Permit
from ..access.errors import InsufficientScope
from ..access.scopes import DicomOp, scope_string
from ..access.settings import AccessSettings
from ..access.bearer import bearer_token
from ..archive.errors import NotFound
from ..archive.scope import Scope
from ..audit.events import Face
from ..config import Settings
from .. import context
from ..context import Guarded
from . import auditing
from .table import Rule, rule_for

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json; charset=utf-8"
STATE = "tcia_gateway"


def install(app: Flask, settings: Settings) -> None:
    """Build the app's policy (and audit trail) and put the hooks under every route."""
    access = AccessSettings.of(settings)
    state = app.extensions[STATE]
    audit = auditing.open_trail(settings, access)
    if audit is not None:
        state["audit"] = audit
        state["audit_store"] = audit.store
        state["closers"].append(audit.close)
    if access.auth_mode == AuthMode.OFF.value:
        if audit is not None:
            _install_audit_only(app)
        return
    policy = build_policy(access, settings.public_base)
    state["policy"] = policy
    # STOW may replace a stored instance only under DUPLICATE_POLICY=overwrite: there it
    # asks for `u` as well as `c` (docs/security.md), whether or not this one replaces.
    replaces = settings.duplicate_policy == "overwrite"
    app.before_request(lambda: _guard(policy, replaces))
    app.after_request(_after)


def _install_audit_only(app: Flask) -> None:
    def _note() -> None:
        rule = rule_for(request.endpoint)
        if rule is not None and not rule.public:
            g.tcia = Guarded(rule)
    app.before_request(_note)
    app.after_request(_after)


def _guard(policy: Policy, replaces: bool = False) -> Response | None:
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    if req.method == "OPTIONS":
        return None  # a CORS preflight carries no credentials (Fetch standard) and no data
    endpoint = req.endpoint
    rule = rule_for(endpoint)
    if rule is None:
        if endpoint is None:
            return None  # no route: the 404/405 of the family
        rule = Rule("*", "cruds")  # fail closed: an endpoint nobody decided about
    if rule.public:
        return None
    state = g.tcia = Guarded(rule)
    try:
        state.principal = policy.authenticate(_token(req))
        letters = "cu" if replaces and rule.op is DicomOp.STOW else rule.permissions
        state.permit = policy.authorize(state.principal, rule.resource_of(req.view_args),
                                        letters)
    except AccessError as exc:
        state.denied = exc
        return answer(rule, exc)
    scope = _scope(policy, state.permit)
    if rule.whole and (scope is not None or not state.permit.unrestricted):
        state.denied = InsufficientScope(
            f"{endpoint} reads the whole archive: it needs an unrestricted user/ or system/ "
            "scope", scope=scope_string("system", rule.resource_of(req.view_args),
                                        rule.permissions))
        return answer(rule, state.denied)
    if scope is not None:
        _refuse_hidden_root(scope)
        context.narrow(scope)  # meets a collection root's scope (dicomweb/roots.py)
    return None


def _refuse_hidden_root(scope: Scope) -> None:
    """The root of a collection this caller may not see answers like an unknown one
    (dicomweb/roots.py says "no collection ... in this archive" for those)."""
    root = context.scope()
    if root is not None and root.collections and scope.hidden & root.collections:
        name = sorted(scope.hidden & root.collections)[0]
        raise NotFound(f"no collection {name!r} in this archive")


def _token(req: Request) -> str | None:
    environ = req.environ
    form: list[str] = []
    if environ["REQUEST_METHOD"] == "POST" and req.mimetype == "application/x-www-form-urlencoded":
        form = list(req.form.keys())
    raw = req.query_string
    # Parse the query only when it can name access_token (as is or percent-encoded): a
    # search planned by its raw query string never parses it otherwise (fhir/plan.py).
    query = req.args.keys() if b"token" in raw or b"%" in raw else ()
    # WSGI servers join repeated Authorization headers into one value, which then fails
    # the b64token syntax (400), as two headers must.
    header = environ.get("HTTP_AUTHORIZATION")
    return bearer_token(header, query, form)


def _scope(policy: Policy, permit: Permit) -> Scope | None:
    hidden = policy.hidden_collections(permit.principal)
    if permit.patient is None and not hidden:
        return None
    patients = frozenset({permit.patient}) if permit.patient is not None else None
    return Scope(patients=patients, hidden=hidden)


def answer(rule: Rule, error: AccessError) -> Response:
    """An access refusal in the face's form, with the RFC 6750 challenge."""
    if rule.face is Face.FHIR:
        fhir = fhir_answer(error)
        return Response(orjson.dumps(fhir.body), status=fhir.status, headers=fhir.headers,
                        content_type=FHIR_JSON)
    web = dicomweb_answer(error)
    body = {**web.body, "message": error.description}
    return Response(orjson.dumps(body), status=web.status, headers=web.headers,
                    mimetype="application/json")


def _after(response: Response) -> Response:
    state: Guarded | None = g.get("tcia")
    if state is None:
        return response
    principal = state.principal
    headers = response.headers
    # one pass over the few headers (a missed Headers.get raises and catches a KeyError)
    control = vary = None
    for name, value in headers.items():
        low = name.lower()
        if low == "cache-control":
            control = value
        elif low == "vary":
            vary = value
    if control is None or "no-store" not in control:
        if not principal.anonymous:
            _private(response, control)
        if vary is None:
            headers.add("Vary", "Authorization")  # absent: no scan to replace it
        else:
            headers["Vary"] = f"{vary}, Authorization" if vary else "Authorization"
    auditing.record(state, response.status_code)
    return response


def _private(response: Response, control: str | None) -> None:
    """A response made for one caller must not be kept by shared caches (RFC 9111 5.2.2.7)."""
    if control is None:  # most answers: nothing to keep, nothing to replace
        response.headers.add("Cache-Control", "private")
        return
    current = [d.strip() for d in control.split(",")
               if d.strip() and d.strip().lower() not in ("public", "private")]
    response.headers["Cache-Control"] = ", ".join(["private", *current])
