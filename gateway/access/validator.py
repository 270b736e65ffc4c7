"""Access-token validation: RFC 9068 JWTs with PyJWT, opaque tokens by RFC 7662.

JWT rules (RFC 9068 4, RFC 8725 3): header `typ` is `at+jwt` (PyJWT does not check it);
`alg` is one of RS256/ES256/PS256, never `none` and never an HMAC (which would let a
public key serve as a shared secret, RFC 8725 2.1); the key is the issuer's, found by
`kid` (`jku`/`x5u`/`jwk` are ignored); `iss` equals AUTH_ISSUER exactly; `aud` contains
AUTH_AUDIENCE; `exp`, `nbf`, `iat` hold within AUTH_LEEWAY seconds; a `crit` header is
refused (we implement no extension, RFC 7515 4.1.11). Required claims: iss, aud, exp, iat,
sub, and client_id (or azp); jti is used when present.

A verified token is kept per process until its `exp`, keyed by its SHA-256, with the `kid`
that signed it: a cache hit costs a dict lookup plus a check that the key is still
published, so a key removed from the JWKS stops its tokens at the next refresh.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

import jwt

from .cache import TtlCache
from .errors import ExpiredToken, InvalidToken
from .introspection import Introspector
from .jwks import FAMILY, JwksCache
from .principal import COLLECTIONS_CLAIM, Principal, cache_key, principal_from_claims

ALGORITHMS = tuple(FAMILY)          # RS256, PS256, ES256
TYP = "at+jwt"                      # RFC 9068 2.1
REQUIRED = ["iss", "aud", "exp", "iat", "sub"]


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    kid: str | None


class TokenValidator:
    """`principal(token)`: the verified caller, or an `AccessError`."""

    def __init__(self, issuer: str, audience: str, *, jwks: JwksCache | None = None,
                 introspector: Introspector | None = None, leeway: float = 30.0,
                 cache_size: int = 10_000, collections_claim: str = COLLECTIONS_CLAIM,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.introspector = introspector
        self.leeway = leeway
        self.collections_claim = collections_claim
        self._clock = clock
        self._verified: TtlCache[_Verified] = TtlCache(cache_size, clock)

    def principal(self, token: str) -> Principal:
        if token.count(".") != 2:
            return self._opaque(token)
        key = cache_key(token)
        hit = self._verified.get(key)
        if hit is not None and self.jwks is not None and self.jwks.knows(hit.kid):
            return hit.principal
        verified = self._verify(token)
        exp = verified.principal.expires_at or 0.0
        self._verified.put(key, verified, exp)
        return verified.principal

    def _opaque(self, token: str) -> Principal:
        if self.introspector is None:
            raise InvalidToken("not a JWT, and token introspection is not configured")
        return self.introspector.principal(token)

    def _verify(self, token: str) -> _Verified:
        if self.jwks is None:
            raise InvalidToken("JWT access tokens need AUTH_ISSUER")
        header = _header(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"signing algorithm {alg!r} is not allowed")
        if not _is_access_token_type(header.get("typ")):
            raise InvalidToken(f"token type {header.get('typ')!r} is not {TYP} (RFC 9068)")
        if "crit" in header:
            raise InvalidToken("critical header extensions are not supported")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed kid")
        signing = self.jwks.key(kid, alg)
        claims = self._decode(token, signing.key, alg)
        if not (claims.get("client_id") or claims.get("azp")):
            raise InvalidToken("the access token has no client_id (RFC 9068 2.2)")
        principal = principal_from_claims(claims, token=token, source="jwt",
                                          collections_claim=self.collections_claim,
                                          kid=signing.kid)
        return _Verified(principal, signing.kid)

    def _decode(self, token: str, key: Any, alg: str) -> dict:
        try:
            return jwt.decode(token, key, algorithms=[alg], audience=self.audience,
                              issuer=self.issuer, leeway=self.leeway,
                              options={"require": REQUIRED, "verify_signature": True})
        except jwt.ExpiredSignatureError as exc:
            raise ExpiredToken() from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("the access token is not valid yet (nbf/iat)") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the access token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("the access token is from another issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the access token has no {exc.claim} claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("the access token signature does not verify") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the access token is malformed ({type(exc).__name__})") from exc


def _header(token: str) -> dict:
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.DecodeError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken("the access token is not a well-formed JWT") from exc
    except jwt.InvalidTokenError as exc:  # PyJWT refuses unknown `crit` itself
        raise InvalidToken("critical header extensions are not supported"
                           if "crit" in str(exc) else "malformed JWT header") from exc
    if not isinstance(header, dict):
        raise InvalidToken("the access token is not a well-formed JWT")
    return header


def _is_access_token_type(typ: object) -> bool:
    """RFC 9068 2.1 `at+jwt`; RFC 7515 4.1.9 lets `application/` be omitted, case-insensitive."""
    if not isinstance(typ, str):
        return False
    value = typ.lower()
    return value in (TYP, "application/" + TYP)
