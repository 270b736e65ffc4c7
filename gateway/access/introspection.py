"""RFC 7662 token introspection for opaque access tokens, with a short decision cache.

The gateway authenticates as a client (RFC 7662 2.1, HTTP Basic per RFC 6749 2.3.1) and
trusts `active`. An active answer must also name our audience and issuer when it states
them, and must not be past `exp`. Answers are cached by token digest: an active one until
`min(exp, now + ttl)`, an inactive one for `negative_ttl`, so a revoked token stops working
within `ttl` seconds and a flood of one bad token costs one call per `negative_ttl`.
"""
from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

from .cache import TtlCache
from .errors import ExpiredToken, InvalidToken, IssuerUnavailable
from .fetch import Fetcher
from .principal import COLLECTIONS_CLAIM, Principal, cache_key, principal_from_claims


class _Denied:
    """A cached negative answer: the error to raise again."""

    def __init__(self, error: InvalidToken) -> None:
        self.kind, self.description = type(error), error.description


class Introspector:
    def __init__(self, url: str | Callable[[], str], client_id: str, client_secret: str, *, audience: str,
                 issuer: str | None = None, fetcher: Fetcher | None = None, ttl: float = 30.0,
                 negative_ttl: float = 10.0, max_entries: int = 10_000,
                 collections_claim: str = COLLECTIONS_CLAIM,
                 clock: Callable[[], float] = time.time) -> None:
        self._url = url  # or a callable: the issuer's introspection_endpoint, found lazily
        self.audience = audience
        self.issuer = issuer
        self.fetcher = fetcher or Fetcher()
        self.ttl, self.negative_ttl = ttl, negative_ttl
        self.collections_claim = collections_claim
        self._clock = clock
        self._cache: TtlCache[Any] = TtlCache(max_entries, clock)
        self._auth = "Basic " + base64.b64encode(
            f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()).decode()
        self.calls = 0

    def principal(self, token: str) -> Principal:
        key = cache_key(token)
        cached = self._cache.get(key)
        if isinstance(cached, _Denied):
            raise cached.kind(cached.description)
        if cached is not None:
            return cached
        self.calls += 1
        answer = self.fetcher.post_form(self.url(), {"token": token,
                                                   "token_type_hint": "access_token"},
                                        {"Authorization": self._auth})
        now = self._clock()
        try:
            self._check(answer, now)
        except InvalidToken as error:
            self._cache.put(key, _Denied(error), now + self.negative_ttl)
            raise
        principal = principal_from_claims(answer, token=token, source="introspection",
                                          collections_claim=self.collections_claim)
        exp = principal.expires_at if principal.expires_at is not None else now + self.ttl
        self._cache.put(key, principal, min(exp, now + self.ttl))
        return principal

    def url(self) -> str:
        url = self._url() if callable(self._url) else self._url
        if not url:
            raise IssuerUnavailable("the issuer publishes no introspection_endpoint; "
                                    "set AUTH_INTROSPECTION_URL")
        return url

    def _check(self, answer: dict[str, Any], now: float) -> None:
        if answer.get("active") is not True:  # RFC 7662 2.2: a JSON boolean
            raise InvalidToken("the access token is not active")
        exp = answer.get("exp")
        if isinstance(exp, (int, float)) and exp <= now:
            raise ExpiredToken()
        aud = answer.get("aud")
        if aud is not None and self.audience not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidToken("the access token is for another audience")
        iss = answer.get("iss")
        if self.issuer and iss is not None and iss != self.issuer:
            raise InvalidToken("the access token is from another issuer")
