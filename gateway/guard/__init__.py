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
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from flask import Flask, Request, Response, request

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
from ..context import GUARDED, Guarded
from . import auditing
from .memo import Decision, DecisionMemo
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
            _install_audit_only(app, audit)
        return
    policy = build_policy(access, settings.public_base)
    state["policy"] = policy
    # STOW may replace a stored instance only under DUPLICATE_POLICY=overwrite: there it
    # asks for `u` as well as `c` (docs/security.md), whether or not this one replaces.
    replaces = settings.duplicate_policy == "overwrite"
    memo = DecisionMemo(policy)
    state["decisions"] = memo
    app.before_request(lambda: _guard(policy, memo, replaces))
    app.wsgi_app = Edge(app.wsgi_app, audit)  # type: ignore[method-assign]


def _install_audit_only(app: Flask, audit: auditing.Audit) -> None:
    def _note() -> None:
        rule = rule_for(request.endpoint)
        if rule is not None and not rule.public:
            request.environ[GUARDED] = Guarded(rule)
    app.before_request(_note)
    app.wsgi_app = Edge(app.wsgi_app, audit)  # type: ignore[method-assign]


def _guard(policy: Policy, memo: DecisionMemo, replaces: bool = False) -> Response | None:
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
    environ = req.environ
    header, key = environ.get("HTTP_AUTHORIZATION"), None
    if header is not None and _header_only(environ):
        key = memo.key(header, str(endpoint), rule.resource_of(req.view_args))
        known = memo.get(key)
        if known is not None:  # this caller, this endpoint, decided before (memo.py)
            state = Guarded(rule, known.principal, known.permit, derived=known.derived)
            environ[GUARDED] = state
            _narrow(known.scope)
            return None
    state = environ[GUARDED] = Guarded(rule)
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
    if key is not None:
        memo.put(key, Decision(state.principal, state.permit, scope, state.derived))
    _narrow(scope)
    return None


def _header_only(environ: dict) -> bool:
    """No token can hide in the query string or a form body (RFC 6750 2.2, 2.3): the
    Authorization header alone decides, so a decision about it may be reused."""
    query = environ.get("QUERY_STRING", "")
    if "token" in query or "%" in query:
        return False
    return environ["REQUEST_METHOD"] != "POST" or \
        "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", "").lower()


def _narrow(scope: Scope | None) -> None:
    if scope is not None:
        _refuse_hidden_root(scope)
        context.narrow(scope)  # meets a collection root's scope (dicomweb/roots.py)


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


class Edge:
    """WSGI middleware (inside CORS and the body limits) finishing every guarded answer:
    ``Vary: Authorization`` and, for a caller with a token, ``Cache-Control: private``,
    unless it is ``no-store``; then its audit record. At the WSGI edge a header is a tuple
    in a list and the status is final (error handlers and conditional answers included);
    Flask's request context is still active while the answer starts."""

    def __init__(self, app: Callable, audit: auditing.Audit | None) -> None:
        self.app = app
        self.audit = audit

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list, exc_info: Any = None) -> Callable:
            state: Guarded | None = environ.get(GUARDED)
            if state is not None:
                headers = private_headers(headers, state.principal.anonymous)
                if self.audit is not None:
                    try:
                        auditing.record(self.audit, state, int(status[:3]))
                    except Exception:  # the answer still goes out; the failure is loud
                        log.exception("audit record of %s failed", environ.get("PATH_INFO"))
            return start_response(status, headers, exc_info)
        return self.app(environ, start)


def private_headers(headers: list[tuple[str, str]], anonymous: bool) -> list[tuple[str, str]]:
    """An answer made for one caller must not be kept by shared caches (RFC 9111 5.2.2.7),
    nor one that depends on the Authorization header be served to another (RFC 9110 12.5.5)."""
    control = vary = None
    for i, (name, _value) in enumerate(headers):
        low = name.lower()
        if low == "cache-control":
            control = i
        elif low == "vary":
            vary = i
    if control is not None and "no-store" in headers[control][1]:
        return headers
    if vary is None:
        headers.append(("Vary", "Authorization"))
    else:
        name, value = headers[vary]
        headers[vary] = (name, f"{value}, Authorization" if value.strip() else "Authorization")
    if anonymous:
        return headers
    if control is None:  # most answers: nothing to keep, nothing to replace
        headers.append(("Cache-Control", "private"))
        return headers
    current = [d.strip() for d in headers[control][1].split(",")
               if d.strip() and d.strip().lower() not in ("public", "private")]
    headers[control] = ("Cache-Control", ", ".join(["private", *current]))
    return headers
