"""Who is asking: a `Principal` built from verified claims, never holding the token itself.

`token_hash` is what logs and audit records carry to correlate requests (with `jti` when
the issuer sets one): a truncated SHA-256, so the token cannot be recovered or replayed.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .scopes import Grants, parse_scopes

COLLECTIONS_CLAIM = "collections"


def token_hash(token: str) -> str:
    """A correlation id for a token: 16 hex digits of SHA-256 (never the token)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def cache_key(token: str) -> bytes:
    """The full SHA-256 digest, the key of per-process decision caches."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller (or the anonymous one) as every face sees it."""

    sub: str | None = None
    client_id: str | None = None
    issuer: str | None = None
    grants: Grants = field(default_factory=Grants)
    patient: str | None = None          # SMART `patient` claim: the compartment of patient/ scopes
    collections: frozenset[str] = frozenset()
    jti: str | None = None
    token_hash: str | None = None
    expires_at: float | None = None     # epoch seconds
    source: str = "anonymous"           # "jwt", "introspection", or "anonymous"
    kid: str | None = None              # the JWKS key that signed the JWT

    @property
    def anonymous(self) -> bool:
        return self.source == "anonymous"

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.grants.raw

    def log_fields(self) -> dict[str, str]:
        """What a log line may say about the caller (no token, no claims beyond ids)."""
        fields = {"sub": self.sub, "client_id": self.client_id, "jti": self.jti,
                  "token": self.token_hash}
        return {k: v for k, v in fields.items() if v}


ANONYMOUS = Principal()


def principal_from_claims(claims: Mapping[str, Any], *, token: str, source: str,
                          collections_claim: str = COLLECTIONS_CLAIM,
                          kid: str | None = None) -> Principal:
    """A Principal from verified JWT claims or an RFC 7662 introspection answer."""
    scope = claims.get("scope", claims.get("scp"))
    patient = claims.get("patient")
    exp = claims.get("exp")
    return Principal(
        sub=_text(claims.get("sub")),
        client_id=_text(claims.get("client_id") or claims.get("azp")),
        issuer=_text(claims.get("iss")),
        grants=parse_scopes(scope if isinstance(scope, (str, list, tuple)) else None),
        patient=_text(patient) if isinstance(patient, (str, int)) else None,
        collections=frozenset(_names(claims.get(collections_claim))),
        jti=_text(claims.get("jti")),
        token_hash=token_hash(token),
        expires_at=float(exp) if isinstance(exp, (int, float)) else None,
        source=source,
        kid=kid,
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _names(value: Any) -> Iterable[str]:
    """A claim holding names: a JSON array, or a space-separated string."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, (str, int))]
    return []
