"""Access to the app's injected collaborators from inside a request."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import current_app, g, has_request_context, request

from .access.policy import Permit, Policy
from .access.principal import ANONYMOUS, Principal
from .archive import Archive
from .archive.scope import Scope
from .config import Settings


def settings() -> Settings:
    return current_app.extensions["tcia_gateway"]["settings"]


@dataclass
class Touched:
    """What a request touched, noted by the faces for its audit record."""

    patients: list[str] = field(default_factory=list)
    studies: list[tuple[str, str | None]] = field(default_factory=list)  # (study UID, patient)


@dataclass
class Guarded:
    """What the access guard (gateway/guard) decided for one request, in ``g.tcia``."""

    rule: object
    principal: Principal = ANONYMOUS
    permit: Permit | None = None
    scope: Scope | None = None
    scoped: Archive | None = None
    denied: Exception | None = None
    touched: Touched = field(default_factory=Touched)


def guarded() -> Guarded | None:
    return g.get("tcia")


def archive() -> Archive:
    """The archive as this request's caller sees it: narrowed to the patient compartment
    and without hidden collections when the access guard set a scope (gateway/guard)."""
    base = current_app.extensions["tcia_gateway"]["archive"]
    state: Guarded | None = g.get("tcia")
    if state is None or state.scope is None:
        return base
    if state.scoped is None:
        state.scoped = base.scoped(state.scope)
    return state.scoped


def policy() -> Policy | None:
    """The app's access policy; None when AUTH_MODE=off (nothing is checked)."""
    return current_app.extensions["tcia_gateway"].get("policy")


def permit() -> Permit | None:
    """What this request's caller may see (None: everything, AUTH_MODE=off or public)."""
    state: Guarded | None = g.get("tcia")
    return state.permit if state is not None else None


def touched(patients: Iterable[str | None] = (),
            studies: Iterable[tuple[str, str | None]] = ()) -> None:
    """Note the patients and studies a request touched (a no-op when it is not audited)."""
    state: Guarded | None = g.get("tcia") if has_request_context() else None
    if state is None:
        return
    notes = state.touched
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
