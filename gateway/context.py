"""Access to the app's injected collaborators from inside a request."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import current_app, g, has_request_context, request

from .access.policy import Permit, Policy
from .archive import Archive
from .archive.scope import Scope
from .config import Settings


def settings() -> Settings:
    return current_app.extensions["tcia_gateway"]["settings"]


def archive() -> Archive:
    """The archive as this request's caller sees it: narrowed to the patient compartment
    and without hidden collections when the access guard set a scope (gateway/guard)."""
    base = current_app.extensions["tcia_gateway"]["archive"]
    scope: Scope | None = g.get("tcia_scope")
    if scope is None:
        return base
    scoped = g.get("tcia_scoped")
    if scoped is None:
        scoped = g.tcia_scoped = base.scoped(scope)
    return scoped


def policy() -> Policy | None:
    """The app's access policy; None when AUTH_MODE=off (nothing is checked)."""
    return current_app.extensions["tcia_gateway"].get("policy")


def permit() -> Permit | None:
    """What this request's caller may see (None: everything, AUTH_MODE=off or public)."""
    return g.get("tcia_permit")


@dataclass
class Touched:
    """What a request touched, noted by the faces for its audit record."""

    patients: list[str] = field(default_factory=list)
    studies: list[tuple[str, str | None]] = field(default_factory=list)  # (study UID, patient)


def touched(patients: Iterable[str | None] = (),
            studies: Iterable[tuple[str, str | None]] = ()) -> None:
    """Note the patients and studies a request touched (a no-op when it is not audited)."""
    notes: Touched | None = g.get("tcia_touched") if has_request_context() else None
    if notes is None:
        return
    notes.patients.extend(p for p in patients if p)
    notes.studies.extend(s for s in studies if s[0])


def public_base() -> str:
    """Scheme://host[/prefix] for absolute links: PUBLIC_URL, or what the reverse proxy
    says (X-Forwarded-Proto/Host/Prefix, first value of each) when TRUST_PROXY is set."""
    current = settings()
    if current.trust_proxy and has_request_context():
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if host:
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
            prefix = request.headers.get("X-Forwarded-Prefix", "").split(",")[0].strip()
            return f"{proto or request.scheme}://{host}{prefix.rstrip('/')}"
    return current.public_base
