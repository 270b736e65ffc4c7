"""The issuer's signing keys: discovered, cached, refreshed on rotation, never hammered.

Keys come only from the `jwks_uri` of the configured issuer's
`/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 4, whose `issuer` must
equal ours, 4.3). Token headers that point elsewhere (`jku`, `x5u`, `jwk`: RFC 7515
4.1.2-4.1.5) are never followed. The set is refetched when it is older than `max_age`, and
on a `kid` it does not know, but never more often than once per `min_refresh_interval`:
a flood of forged `kid`s costs the issuer at most one request per interval. A failed
refresh keeps the keys already known.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import InvalidToken, IssuerUnavailable
from .fetch import Fetcher

log = logging.getLogger(__name__)

# RFC 7518 3.1: the algorithm families we accept, by the key type they need
FAMILY = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
MIN_RSA_BITS = 2048  # RFC 7518 3.3


@dataclass(frozen=True)
class SigningKey:
    kid: str | None
    kty: str
    alg: str | None   # the JWK's own `alg`, when it states one (RFC 7517 4.4)
    key: Any          # a cryptography public key

    def usable_for(self, alg: str) -> bool:
        return FAMILY.get(alg) == self.kty and self.alg in (None, alg)


def discovery_url(issuer: str) -> str:
    """OpenID Connect Discovery 1.0 4: strip a trailing slash, append the well-known path."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


class JwksCache:
    """`key(kid, alg)` answers from memory; fetches only as the docstring above allows."""

    def __init__(self, issuer: str, fetcher: Fetcher | None = None, *, max_age: float = 300.0,
                 min_refresh_interval: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self.fetcher = fetcher or Fetcher()
        self.max_age = max_age
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[SigningKey] | None = None
        self._kids: frozenset[str | None] = frozenset()  # of _keys: one set lookup a request
        self._check_at = float("-inf")  # before it, no key set can be stale (knows)
        self._fetched_at = float("-inf")   # last successful fetch
        self._attempted_at = float("-inf")  # last attempt, successful or not
        self._metadata: dict[str, Any] | None = None
        self.fetches = 0

    # ---------------------------------------------------------------- lookups
    def key(self, kid: str | None, alg: str) -> SigningKey:
        """The key that must have signed a token with header `kid`/`alg`."""
        with self._lock:
            if self._keys is None or self._stale():
                self._refresh(required=self._keys is None)
            found = self._find(kid, alg)
            if found is None and self._may_retry():
                self._refresh(required=False)
                found = self._find(kid, alg)
        if found is None:
            raise InvalidToken(f"unknown signing key (kid {kid!r}, alg {alg})")
        return found

    def knows(self, kid: str | None) -> bool:
        """Is `kid` still published, as of the last refresh? (No fetch: for cached tokens.)"""
        if self._clock() >= self._check_at and self._keys is not None and self._stale():
            with self._lock:  # no lock, one clock read on every other request
                if self._keys is not None and self._stale():
                    self._refresh(required=False)
        return kid in self._kids

    def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (fetched once)."""
        with self._lock:
            return dict(self._discover())

    # ---------------------------------------------------------------- fetching
    def _may_retry(self) -> bool:
        return self._clock() - self._attempted_at >= self.min_refresh_interval

    def _stale(self) -> bool:
        """Older than max_age, and not just retried: a dead issuer is asked once per interval."""
        now = self._clock()
        # the earliest moment this can turn true (a refresh moves it later, never earlier)
        self._check_at = max(self._fetched_at + self.max_age,
                             self._attempted_at + self.min_refresh_interval)
        return now - self._fetched_at >= self.max_age and \
            now - self._attempted_at >= self.min_refresh_interval

    def _find(self, kid: str | None, alg: str) -> SigningKey | None:
        keys = [k for k in self._keys or () if k.usable_for(alg)]
        if kid is not None:
            return next((k for k in keys if k.kid == kid), None)
        return keys[0] if len(keys) == 1 else None  # no kid: only an unambiguous key

    def _refresh(self, *, required: bool) -> None:
        now = self._clock()
        if self._keys is None and not self._may_retry():
            # The issuer failed moments ago: do not retry on every request.
            raise IssuerUnavailable(f"no signing keys from {self.issuer} yet; retrying "
                                    f"at most every {self.min_refresh_interval:g} s")
        self._attempted_at = now
        try:
            self.fetches += 1
            document = self.fetcher.get_json(self._discover()["jwks_uri"])
            keys = parse_jwks(document)
        except IssuerUnavailable as exc:
            self._metadata = None  # rediscover next time: jwks_uri may have moved
            if required or not self._keys:
                raise
            log.warning("JWKS refresh failed, keeping %d known keys: %s", len(self._keys), exc)
            return
        if not keys and self._keys:
            log.warning("JWKS of %s has no usable signing key; keeping the known ones", self.issuer)
            return
        self._keys, self._fetched_at = keys, self._attempted_at
        self._kids = frozenset(k.kid for k in keys)
        log.info("JWKS of %s: %d signing keys (%s)", self.issuer, len(keys),
                 ", ".join(str(k.kid) for k in keys))

    def _discover(self) -> dict[str, Any]:
        if self._metadata is None:
            doc = self.fetcher.get_json(discovery_url(self.issuer))
            if doc.get("issuer") != self.issuer:
                raise IssuerUnavailable(f"discovery issuer {doc.get('issuer')!r} is not "
                                        f"AUTH_ISSUER {self.issuer!r} (OIDC Discovery 4.3)")
            if not isinstance(doc.get("jwks_uri"), str):
                raise IssuerUnavailable(f"discovery of {self.issuer} has no jwks_uri")
            self._metadata = doc
        return self._metadata


def parse_jwks(document: dict[str, Any]) -> list[SigningKey]:
    """The signature keys of a JWK Set (RFC 7517 5); encryption and unusable keys skipped."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise IssuerUnavailable("JWKS without a `keys` array")
    out = []
    for jwk in keys:
        key = _signing_key(jwk) if isinstance(jwk, dict) else None
        if key is not None:
            out.append(key)
    return out


def _signing_key(jwk: dict[str, Any]) -> SigningKey | None:
    if jwk.get("use", "sig") != "sig":
        return None  # RFC 7517 4.2
    ops = jwk.get("key_ops")
    if isinstance(ops, list) and "verify" not in ops:
        return None  # RFC 7517 4.3
    if jwk.get("kty") not in ("RSA", "EC") or "d" in jwk:
        return None  # a private JWK in a public set is a publisher error: do not use it
    try:
        public = jwt.PyJWK(jwk).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        return None
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name != "secp256r1":
        return None
    alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
    kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
    return SigningKey(kid, jwk["kty"], alg, public)
