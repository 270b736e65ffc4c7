"""The one policy every face consults: modes, scopes, patient compartments, collections.

Modes (AUTH_MODE): `off` allows everything without looking at tokens (the gateway as it
was); `public-read` lets anonymous callers read and search (`r`, `s`) everything except
the audit trail and restricted collections, and needs a token for the rest; `required`
needs a token for every data request. A token that is presented is always validated, in
every mode but `off`: a bad token is an error even where none was needed (RFC 6750 3.1).
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cache import BoundedCache
from .errors import InsufficientScope, MissingCredentials
from .principal import ANONYMOUS, Principal
from .scopes import IMAGING, DicomOp, decide, dicom_permissions, scope_string

if TYPE_CHECKING:
    from .validator import TokenValidator

READS = frozenset("rs")
TOKEN_ONLY = frozenset({"AuditEvent"})  # never served to anonymous callers
NO_PATIENT_CONTEXT = frozenset({"AuditEvent"})  # only user/ or system/ scopes grant these


class AuthMode(str, enum.Enum):
    OFF = "off"
    PUBLIC_READ = "public-read"
    REQUIRED = "required"


@dataclass(frozen=True)
class Permit:
    """What a face may serve: `patient` set means "only this patient's compartment";
    `categories` set means "only resources in these categories" (granular scopes)."""

    principal: Principal
    patient: str | None = None
    categories: frozenset[str] | None = None
    granted_by: tuple[str, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return self.patient is None and self.categories is None


class Policy:
    def __init__(self, mode: AuthMode | str = AuthMode.OFF, validator: TokenValidator | None = None,
                 *, restricted_collections: Iterable[str] = ()) -> None:
        self.mode = AuthMode(mode)
        self.validator = validator
        self.restricted = frozenset(restricted_collections)
        # a token's grants never change: its permits are decided once per worker (a hit
        # is one dict lookup on every request of a viewer; the key is the token's digest)
        self._permits: BoundedCache[tuple[str, str, str], Permit] = BoundedCache(4096)
        if self.mode is not AuthMode.OFF and validator is None:
            raise ValueError(f"AUTH_MODE={self.mode.value} needs a token validator (AUTH_ISSUER)")

    def authenticate(self, token: str | None) -> Principal:
        """The caller of a request whose bearer token (already extracted) is `token`."""
        if self.mode is AuthMode.OFF:
            return ANONYMOUS
        if token is None:
            if self.mode is AuthMode.REQUIRED:
                raise MissingCredentials()
            return ANONYMOUS
        assert self.validator is not None
        return self.validator.principal(token)

    def authorize(self, principal: Principal, resource: str, permissions: str,
                  categories: Iterable[str] | None = None) -> Permit:
        """May `principal` do `permissions` (letters of `cruds`) on `resource`?"""
        if self.mode is AuthMode.OFF:
            return Permit(principal)
        if principal.anonymous:
            return self._anonymous(principal, resource, permissions)
        key = (principal.token_hash, resource, permissions) \
            if principal.token_hash and categories is None else None
        if key is not None:
            known = self._permits.get(key)
            if known is not None and known.principal is principal:
                return known
        permit = self._decide(principal, resource, permissions, categories)
        if key is not None:
            self._permits.put(key, permit)
        return permit

    def _decide(self, principal: Principal, resource: str, permissions: str,
                categories: Iterable[str] | None) -> Permit:
        wanted = list(categories) if categories is not None else None
        decision = decide(principal.grants, resource, permissions, wanted)
        if not decision.allowed:
            raise InsufficientScope(
                f"no scope grants {decision.missing!r} on {resource}",
                scope=needed_scope(principal, resource, permissions, wanted))
        patient = None
        if decision.compartment_only and resource in NO_PATIENT_CONTEXT:
            raise InsufficientScope(f"{resource} needs a user/ or system/ scope",
                                    scope=scope_string("user", resource, permissions))
        if decision.compartment_only:
            if principal.patient is None:
                raise InsufficientScope("patient/ scopes without a patient claim grant nothing",
                                        scope=scope_string("user", resource, permissions))
            patient = principal.patient
        return Permit(principal, patient, decision.categories, decision.granted_by)

    def authorize_dicom(self, principal: Principal, op: DicomOp, *,
                        replaces: bool = False) -> Permit:
        """DICOM operations count as ImagingStudy permissions (see `dicom_permissions`)."""
        return self.authorize(principal, IMAGING, dicom_permissions(op, replaces=replaces))

    def collection_visible(self, principal: Principal, collection: str | None) -> bool:
        """Restricted collections (AUTH_RESTRICTED_COLLECTIONS) need the collections claim."""
        if self.mode is AuthMode.OFF or collection not in self.restricted:
            return True
        return not principal.anonymous and collection in principal.collections

    def reusable(self, principal: Principal, now: float) -> bool:
        """May a decision about this caller be reused now? Only for a JWT not expired whose
        signing key is still published (so a removed key stops it at the next JWKS
        refresh, as the token cache does); never for introspected or anonymous callers."""
        expires, kid = principal.expires_at, principal.kid
        if kid is None or expires is None or expires <= now or self.validator is None:
            return False
        jwks = self.validator.jwks
        return jwks is not None and jwks.knows(kid)

    def hidden_collections(self, principal: Principal) -> frozenset[str]:
        """The restricted collections this caller may not see (to narrow a search)."""
        if self.mode is AuthMode.OFF or not self.restricted:
            return frozenset()
        return self.restricted - (frozenset() if principal.anonymous else principal.collections)

    def _anonymous(self, principal: Principal, resource: str, permissions: str) -> Permit:
        if (self.mode is AuthMode.PUBLIC_READ and set(permissions) <= READS
                and resource not in TOKEN_ONLY):
            return Permit(principal)
        raise MissingCredentials(f"{resource} {'/'.join(permissions)} needs an access token")


def needed_scope(principal: Principal, resource: str, permissions: str,
                 categories: list[str] | None = None) -> str:
    """The scope to ask for, in the launch context the caller already has."""
    contexts = principal.grants.contexts
    if principal.patient is not None and contexts <= {"patient"}:
        context = "patient"
    elif "system" in contexts and "user" not in contexts:
        context = "system"
    else:
        context = "user"
    category = categories[0] if categories else None
    return scope_string(context, resource, permissions, category)
