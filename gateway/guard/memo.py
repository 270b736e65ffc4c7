"""The guard's decisions, reused: one digest and one dict lookup for a caller seen before.

A viewer sends the same token hundreds of times a minute. Its first request on an endpoint
goes the whole way (RFC 6750 header syntax, the JWT's signature and claims, the scopes, the
compartment); what came out is kept per worker, keyed by the SHA-256 of the Authorization
header (never the token itself) with the endpoint and the resource asked for. It is reused
while the token has not expired and its signing key is still published (`Policy.reusable`:
a key removed from the issuer's JWKS stops it at the next refresh, as the token cache
does). Only successes are kept, so a refusal is always decided afresh; a request that could
carry a token elsewhere (the query string, a form body) is never answered from here.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from ..access.policy import Permit, Policy
from ..access.principal import Principal
from ..archive.scope import Scope

MAX_ENTRIES = 4096  # per worker: then it starts afresh (no LRU bookkeeping on a hit)


@dataclass(frozen=True)
class Decision:
    principal: Principal
    permit: Permit
    scope: Scope | None
    derived: dict[str, Any] = field(default_factory=dict)  # faces' per-decision objects


class DecisionMemo:
    def __init__(self, policy: Policy, max_entries: int = MAX_ENTRIES) -> None:
        self.policy = policy
        self.max_entries = max_entries
        self._items: dict[tuple[bytes, str, str], Decision] = {}

    @staticmethod
    def key(header: str, endpoint: str, resource: str) -> tuple[bytes, str, str]:
        """``header`` as WSGI gives it (PEP 3333: bytes as latin-1, so encoding is exact)."""
        return hashlib.sha256(header.encode("latin-1")).digest(), endpoint, resource

    def get(self, key: tuple[bytes, str, str]) -> Decision | None:
        found = self._items.get(key)
        if found is None:
            return None
        if not self.policy.reusable(found.principal, time.time()):
            self._items.pop(key, None)
            return None
        return found

    def put(self, key: tuple[bytes, str, str], decision: Decision) -> None:
        if not self.policy.reusable(decision.principal, time.time()):
            return
        if len(self._items) >= self.max_entries:
            self._items.clear()  # racing threads may both clear: harmless
        self._items[key] = decision

    def __len__(self) -> int:
        return len(self._items)
