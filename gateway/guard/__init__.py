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
from flask import Flask, Response, g, request

from ..access import AccessError, Policy, build_policy
from ..access.answers import dicomweb_answer, fhir_answer
from ..access.policy import AuthMode, Permit
from ..access.principal import ANONYMOUS
from ..access.settings import AccessSettings
from ..access.bearer import bearer_token
from ..archive.scope import Scope
from ..audit.events import Face
from ..config import Settings
from ..context import Touched
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
    app.before_request(lambda: _guard(policy))
    app.after_request(_after)


def _install_audit_only(app: Flask) -> None:
    def _note() -> None:
        rule = rule_for(request.endpoint)
        if rule is not None and not rule.public:
            g.tcia_rule, g.tcia_touched = rule, Touched()
    app.before_request(_note)
    app.after_request(_after)


def _guard(policy: Policy) -> Response | None:
    rule = rule_for(request.endpoint)
    if rule is None:
        if request.endpoint is None:
            return None  # no route: the 404/405 of the family
        rule = Rule("*", "cruds")  # fail closed: an endpoint nobody decided about
    if rule.public:
        return None
    g.tcia_rule, g.tcia_touched = rule, Touched()
    try:
        principal = policy.authenticate(_token())
        g.tcia_principal = principal
        permit = policy.authorize(principal, rule.resource_of(request.view_args), rule.permissions)
    except AccessError as exc:
        g.tcia_denied = exc
        return answer(rule, exc)
    g.tcia_permit = permit
    scope = _scope(policy, permit)
    if scope is not None:
        g.tcia_scope = scope
    return None


def _token() -> str | None:
    form: list[str] = []
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        form = list(request.form.keys())
    return bearer_token(request.headers.getlist("Authorization"), request.args.keys(), form)


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
    rule: Rule | None = g.get("tcia_rule")
    if rule is None:
        return response
    principal = g.get("tcia_principal", ANONYMOUS)
    if "no-store" not in response.headers.get("Cache-Control", ""):
        if not principal.anonymous:
            _private(response)
        response.vary.add("Authorization")
    auditing.record(rule, principal, response.status_code)
    return response


def _private(response: Response) -> None:
    """A response made for one caller must not be kept by shared caches (RFC 9111 5.2.2.7)."""
    current = [d.strip() for d in response.headers.get("Cache-Control", "").split(",")
               if d.strip() and d.strip().lower() not in ("public", "private")]
    response.headers["Cache-Control"] = ", ".join(["private", *current])
