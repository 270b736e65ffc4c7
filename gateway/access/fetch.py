"""HTTP to the issuer (discovery, JWKS, introspection) with bounded time and size.

Every failure becomes `IssuerUnavailable` naming the URL (never a credential): a request
whose token cannot be checked right now answers 503, not "invalid token".
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from .errors import IssuerUnavailable

MAX_BYTES = 1 << 20  # a JWKS or discovery document is a few KiB


class Fetcher:
    """GET/POST JSON documents; one `requests.Session` (connection reuse) per instance."""

    def __init__(self, timeout: float = 5.0, max_bytes: int = MAX_BYTES,
                 session: requests.Session | None = None) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.session = session or requests.Session()

    def get_json(self, url: str) -> dict[str, Any]:
        return self._call("GET", url)

    def post_form(self, url: str, data: Mapping[str, str],
                  headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        # No redirects: client credentials must reach exactly the configured endpoint.
        return self._call("POST", url, data=dict(data), headers=dict(headers or {}),
                          allow_redirects=False)

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        try:
            with self.session.request(method, url, headers=headers, timeout=self.timeout,
                                      stream=True, **kwargs) as response:
                body = _read_capped(response, self.max_bytes)
                if response.status_code != 200:
                    raise IssuerUnavailable(f"{method} {url}: HTTP {response.status_code}")
        except requests.RequestException as exc:
            raise IssuerUnavailable(f"{method} {url}: {type(exc).__name__}") from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise IssuerUnavailable(f"{method} {url}: not JSON") from exc
        if not isinstance(document, dict):
            raise IssuerUnavailable(f"{method} {url}: not a JSON object")
        return document


def _read_capped(response: requests.Response, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise IssuerUnavailable(f"{response.url}: larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
