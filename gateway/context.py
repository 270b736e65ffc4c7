"""Access to the app's injected collaborators from inside a request."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import current_app, g, has_request_context, request

from .access.policy import Permit, Policy
from .access.principal import ANONYMOUS, Principal
from .archive import Archive
from .archive.scope import Scope
from .clinical.collections import CollectionFacts, load_facts
from .config import Settings

_SCOPE = "tcia_scope"
GUARDED = "tcia.guarded"  # the request's Guarded, in its WSGI environ (no proxy on the way)


def settings() -> Settings:
    return current_app.extensions["tcia_gateway"]["settings"]


def archive() -> Archive:
    """The app's archive as this request may see it (every ``narrow`` of the request)."""
    base: Archive = current_app.extensions["tcia_gateway"]["archive"]
    scope: Scope | None = g.get(_SCOPE) if has_request_context() else None
    return base if scope is None else base.scoped(scope)


@dataclass(slots=True)
class Touched:
    """What a request touched, noted by the faces for its audit record."""

    patients: list[str | None] = field(default_factory=list)  # empty ones dropped when recorded
    studies: list[tuple[str, str | None]] = field(default_factory=list)  # (study UID, patient)


@dataclass(slots=True)
class Guarded:
    """What the access guard (gateway/guard) decided for one request, in its environ; the
    scope it found is applied with :func:`narrow`."""

    rule: object
    principal: Principal = ANONYMOUS
    permit: Permit | None = None
    denied: Exception | None = None
    touched: Touched = field(default_factory=Touched)
    # objects the faces derive from the decision alone, shared by every request that
    # reuses it (guard/memo.py): FHIR's Caller
    derived: dict = field(default_factory=dict)


def guarded() -> Guarded | None:
    return request.environ.get(GUARDED)


def policy() -> Policy | None:
    """The app's access policy; None when AUTH_MODE=off (nothing is checked)."""
    return current_app.extensions["tcia_gateway"].get("policy")


def permit() -> Permit | None:
    """What this request's caller may see (None: everything, AUTH_MODE=off or public)."""
    state: Guarded | None = request.environ.get(GUARDED)
    return state.permit if state is not None else None


def touched(patients: Iterable[str | None] = (),
            studies: Iterable[tuple[str, str | None]] = ()) -> None:
    """Note the patients and studies a request touched (a no-op when it is not audited)."""
    state: Guarded | None = request.environ.get(GUARDED) if has_request_context() else None
    if state is None:
        return
    notes = state.touched  # as given (C-speed extend): empty ones are dropped when recorded
    notes.patients.extend(patients)
    notes.studies.extend(studies)


def whole_archive() -> Archive:
    """The app's archive, unscoped (listings that are not answers about its content)."""
    return current_app.extensions["tcia_gateway"]["archive"]


def narrow(scope: Scope) -> None:
    """Narrow what this request sees (a collection root, a patient token): scopes meet."""
    current: Scope | None = g.get(_SCOPE)
    setattr(g, _SCOPE, scope if current is None else current.narrow(scope))


def scope() -> Scope | None:
    """This request's scope, if any part of it narrowed the archive."""
    return g.get(_SCOPE) if has_request_context() else None


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


def collection_facts() -> dict[str, CollectionFacts]:
    """Facts of the TCIA collections (idc-index-data), read once per app on first use."""
    state = current_app.extensions["tcia_gateway"]
    if "collection_facts" not in state:
        state["collection_facts"] = load_facts(settings().data_dir / "cache")
    return state["collection_facts"]


def known_collections() -> frozenset[str]:
    """Collections the gateway knows facts of (``collections_index``), held or not."""
    return frozenset(collection_facts())
