"""SMART App Launch 2.x scopes (v2 grammar, with the v1 mapping) and the DICOM operations.

Grammar (SMART 2.x "Scopes for requesting FHIR resources"):
`( patient | user | system ) "/" ( ResourceType | "*" ) "." permissions [ "?" param=value ("&" ...) ]`
with permissions a non-empty, in-order subset of `c r u d s`; the v1 forms `read`, `write`
and `*` mean `rs`, `cud` and `cruds`. The only search parameter honoured in a scope is
`category` (SMART 2.x granular scopes; Observation and Condition): a scope with any other
parameter grants nothing, because the gateway could not enforce the restriction.
Scopes that are not resource scopes (`openid`, `fhirUser`, `launch/patient`, ...) are kept
but grant no data access.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
ORDER = "cruds"
V1 = {"read": "rs", "write": "cud", "*": "cruds"}
GRANULAR = frozenset({"Observation", "Condition"})  # SMART 2.x: category-granular types
IMAGING = "ImagingStudy"
_SCOPE = re.compile(r"(patient|user|system)/([A-Z][A-Za-z]+|\*)\.([a-z*]+)(?:\?(.*))?\Z")


@dataclass(frozen=True)
class Scope:
    """One parsed resource scope."""

    context: str
    resource: str
    permissions: frozenset[str]
    category: str | None  # a FHIR token (`system|code` or `code`); None = every category
    raw: str

    def covers(self, resource: str, permission: str, categories: frozenset[str] | None) -> bool:
        if self.resource not in ("*", resource) or permission not in self.permissions:
            return False
        if self.category is None:
            return True
        if categories is None:  # a search without a category: narrowed, see Decision
            return True
        return any(token_matches(self.category, c) for c in categories)


@dataclass(frozen=True)
class Grants:
    """The resource scopes of a token, and the ones that grant nothing."""

    scopes: tuple[Scope, ...] = ()
    ignored: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()

    def granting(self, resource: str, permission: str,
                 categories: frozenset[str] | None = None) -> tuple[Scope, ...]:
        return tuple(s for s in self.scopes if s.covers(resource, permission, categories))

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.scopes)


@dataclass(frozen=True)
class Decision:
    """Whether the scopes grant `permissions` on `resource`, and within which limits.

    `compartment_only`: every letter is granted by `patient/` scopes alone, so the caller
    must restrict to the token's patient. `categories`: the categories a category-less
    search must be narrowed to (None: no narrowing).
    """

    allowed: bool
    compartment_only: bool = False
    categories: frozenset[str] | None = None
    missing: str = ""  # permission letters not granted
    granted_by: tuple[str, ...] = field(default=())


def parse_permissions(text: str) -> frozenset[str] | None:
    """`rs` -> {r, s}; v1 `read`/`write`/`*` mapped; None if not a valid permission string."""
    text = V1.get(text, text)
    if not text or any(c not in ORDER for c in text):
        return None
    positions = [ORDER.index(c) for c in text]
    if positions != sorted(set(positions)):  # SMART 2.x: in order, no repeats
        return None
    return frozenset(text)


def parse_scope(text: str) -> Scope | None:
    """One resource scope, or None if `text` is not one the gateway can enforce."""
    match = _SCOPE.match(text)
    if match is None:
        return None
    context, resource, perms, query = match.groups()
    permissions = parse_permissions(perms)
    if permissions is None:
        return None
    category = None
    if query is not None:
        params = parse_qsl(query, keep_blank_values=True)
        if len(params) != 1 or params[0][0] != "category" or not params[0][1]:
            return None
        if resource not in GRANULAR:
            return None
        category = params[0][1]
    return Scope(context, resource, permissions, category, text)


def parse_scopes(scope: str | Iterable[str] | None) -> Grants:
    """Space-separated `scope` claim (RFC 8693 4.2 / RFC 9068 2.2.3.1) or a list of scopes."""
    items = scope.split() if isinstance(scope, str) else [str(s) for s in (scope or ())]
    parsed, ignored = [], []
    for item in items:
        result = parse_scope(item)
        (parsed.append(result) if result else ignored.append(item))
    return Grants(tuple(parsed), tuple(ignored), tuple(items))


def decide(grants: Grants, resource: str, permissions: str,
           categories: Iterable[str] | None = None) -> Decision:
    """Do `grants` cover every letter of `permissions` on `resource` (for `categories`)?"""
    wanted = frozenset(categories) if categories is not None else None
    missing, compartment_only = "", False
    used: list[str] = []
    narrowed: frozenset[str] | None = None
    for letter in permissions:
        scopes = grants.granting(resource, letter, wanted)
        if not scopes:
            missing += letter
            continue
        used.extend(s.raw for s in scopes)
        compartment_only = compartment_only or all(s.context == "patient" for s in scopes)
        if wanted is None and all(s.category for s in scopes):
            letter_categories = frozenset(s.category for s in scopes if s.category)
            narrowed = letter_categories if narrowed is None else narrowed & letter_categories
    if missing:
        return Decision(False, missing=missing)
    return Decision(True, compartment_only, narrowed, "", tuple(dict.fromkeys(used)))


def token_matches(scope_token: str, resource_token: str) -> bool:
    """FHIR token semantics: `system|code` matches exactly; a bare `code` matches any system."""
    if "|" not in scope_token:
        return resource_token.rsplit("|", 1)[-1] == scope_token
    return scope_token == resource_token


def scope_string(context: str, resource: str, permissions: str, category: str | None = None) -> str:
    """The scope a client would need, e.g. `patient/ImagingStudy.s` (for insufficient_scope)."""
    letters = "".join(c for c in ORDER if c in permissions)
    text = f"{context}/{resource}.{letters}"
    return f"{text}?category={category}" if category else text


class DicomOp(enum.Enum):
    """DICOM operations, each counted as a permission on ImagingStudy."""

    QIDO = "qido"
    C_FIND = "c-find"
    WADO = "wado"
    WADO_URI = "wado-uri"
    RENDERED = "rendered"
    THUMBNAIL = "thumbnail"
    BULKDATA = "bulkdata"
    C_GET = "c-get"
    C_MOVE = "c-move"
    STOW = "stow"
    C_STORE = "c-store"


_SEARCH = {DicomOp.QIDO, DicomOp.C_FIND}
_STORE = {DicomOp.STOW, DicomOp.C_STORE}


def dicom_permissions(op: DicomOp, *, replaces: bool = False) -> str:
    """QIDO/C-FIND `s`; retrievals `r`; STOW/C-STORE `c`, plus `u` when it would replace."""
    if op in _SEARCH:
        return "s"
    if op in _STORE:
        return "cu" if replaces else "c"
    return "r"
