"""One audit record per audited request, from what the guard and the faces noted.

Who comes from the request's principal (never its token: `jti` and a hash), what from the
endpoint's rule, its path, raw query and the patients and studies the face noted
(`context.touched`), the outcome from the status or the refusal. Frames, bulk data,
rendered images and thumbnails come many per study: a successful one is recorded once per
caller, study and minute (docs/security.md, "aggregating them"); any other successful read
or search is recorded once per caller, URL and minute (a poll, a viewer's repeated fetch
discloses nothing new, and an AuditEvent costs more than a cached answer). Writes,
refusals and failures are always recorded.
"""
from __future__ import annotations

import time

from flask import current_app, request

from ..access import AccessError, InsufficientScope
from ..access.settings import AccessSettings
from ..archive.protocol import Level, Query
from ..audit.events import Action, Actor, Alert, AuditRecord, Outcome, Server, Study, new_id
from ..audit.store import AuditStore
from ..audit.syslog import SyslogSender
from ..audit.trail import AuditTrail
from ..cache import BoundedCache
from ..config import Settings
from ..context import Guarded, Touched
from .table import Rule

STATE = "tcia_gateway"
REPEAT_WINDOW = 60  # seconds: identical successful reads by one caller make one record
REPEATABLE = frozenset({Action.QUERY, Action.READ})
RECENT_MAX = 8192
AGGREGATED = frozenset({"dicomweb.retrieve_frames", "dicomweb.retrieve_bulk",
                        "dicomweb.rendered_one", "dicomweb.rendered_many",
                        "dicomweb.thumbnail_one", "dicomweb.thumbnail_many"})


class Audit:
    """The app's trail, its store (for /fhir/AuditEvent) and the small caches records need."""

    def __init__(self, trail: AuditTrail, store: AuditStore, server: Server) -> None:
        self.trail = trail
        self.store = store
        self.server = server
        self.study_patients: BoundedCache[str, str] = BoundedCache(8192)
        # the reads recorded in this window: a plain dict (the window is in the key, so
        # old entries never match again; cleared when full), no lock on every read
        self.recent: dict[tuple, bool] = {}

    def close(self) -> None:
        self.trail.close()


def open_trail(settings: Settings, access: AccessSettings) -> Audit | None:
    """The trail: with access control on, or AUDIT_SYSLOG set; else None (nothing audited)."""
    if access.auth_mode == "off" and not access.audit_syslog:
        return None
    from ..archive.local.index import make_engine
    store = AuditStore(make_engine(settings.index_url))
    store.create()
    sender = (SyslogSender(access.audit_syslog, ca_file=access.audit_syslog_tls_ca)
              if access.audit_syslog else None)
    server = Server(name=settings.public_base, ae_title=settings.ae_title)
    return Audit(AuditTrail(store, sender), store, server)


def record(audit: Audit, state: Guarded, status: int) -> None:
    rule: Rule = state.rule  # type: ignore[assignment]
    principal = state.principal
    denied = state.denied if isinstance(state.denied, AccessError) else None
    if denied is None and status < 400 and rule.action in REPEATABLE:
        req = request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ  # the raw path and query: an identity, not for display
        what = ((req.view_args or {}).get("study") if req.endpoint in AGGREGATED
                else environ.get("QUERY_STRING"))
        key = (principal.token_hash or environ.get("REMOTE_ADDR"), req.endpoint,
               environ.get("SCRIPT_NAME"), environ.get("PATH_INFO"), what,
               int(time.time() // REPEAT_WINDOW))
        recent = audit.recent
        if key in recent:
            return  # the same caller asked the same again within the window
        if len(recent) >= RECENT_MAX:
            recent.clear()  # racing threads may both clear: one more record, never fewer
        recent[key] = True
    notes = state.touched
    studies = _studies(audit, notes, status)
    permit = state.permit
    patients = [*(p for p in notes.patients if p),
                *([permit.patient] if permit and permit.patient else [])]
    action, attempted, alert = rule.action, None, None
    if denied is not None:
        attempted = rule.action
        if isinstance(denied, InsufficientScope):
            action, alert = Action.SECURITY_ALERT, Alert.RESTRICTED_FUNCTION
        else:
            action = Action.LOGIN
    audit.trail.record(AuditRecord(
        action=action, face=rule.face, outcome=_outcome(status, denied),
        who=Actor.of(principal, address=request.remote_addr), server=audit.server,
        request_id=request.headers.get("X-Request-Id") or new_id(),
        method=request.method, path=request.path, query=request.query_string or None,
        resources=_resources(), studies=tuple(studies), patients=tuple(patients),
        description=denied.description if denied is not None else None,
        alert=alert, attempted=attempted))


def _outcome(status: int, denied: AccessError | None) -> Outcome:
    if denied is not None or 400 <= status < 500:
        return Outcome.MINOR_FAILURE
    return Outcome.SERIOUS_FAILURE if status >= 500 else Outcome.SUCCESS


def _resources() -> tuple[str, ...]:
    args = request.view_args or {}
    if "kind" in args and "rid" in args:
        return (f"{args['kind']}/{args['rid']}",)
    if request.endpoint == "fhir.everything":
        return (f"Patient/{args.get('rid')}",)
    return ()


def _studies(audit: Audit, notes: Touched, status: int) -> list[Study]:
    """The studies of the path and those noted, each with its patient where known."""
    pairs = [s for s in notes.studies if s[0]]
    study = (request.view_args or {}).get("study") or request.args.get("studyUID")
    if study and study not in {uid for uid, _ in pairs}:
        pairs.append((study, None))
    out = []
    for uid, patient in dict.fromkeys(pairs):
        if patient is None and status < 400:
            patient = _patient_of(audit, uid)
        out.append(Study(uid, patient))
    return out


def _patient_of(audit: Audit, study: str) -> str | None:
    """The patient of a study (one indexed query per study and process, then remembered)."""
    known = audit.study_patients.get(study)
    if known is not None:
        return known or None
    try:
        found = current_app.extensions[STATE]["archive"].search(
            Query(Level.STUDY, {"StudyInstanceUID": study}, frozenset({"PatientID"}), limit=1))
        value = (found.matches[0].get("00100020", {}).get("Value") or [""])[0] \
            if found.matches else ""
    except Exception:  # the audit must not fail the request: the study is still recorded
        return None
    audit.study_patients.put(study, str(value))
    return str(value) or None
