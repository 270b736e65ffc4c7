"""GetObject as one plain HTTP GET: the objects of a cold series without botocore's per-call work.

A cold series is CPU-bound on a small machine: here botocore spent ~2.3 ms of CPU per
GetObject of a 512x512 CT slice (its event hooks, request model and response parsing), more
than the spool, hash and parse of the object together; a GET through urllib3 (which botocore
itself sends with) costs ~1 ms, signed. So objects are read with the S3 REST API's GetObject
(path-style ``{endpoint}/{bucket}/{key}``, as the listing's client is configured), signed
with Signature Version 4 only when credentials are given: ``idc-open-data`` is public and
read unsigned. The listing stays with boto3 (one call per 1000 objects).

Errors are raised in botocore's shape (:class:`S3Error` has ``response`` like a
``ClientError``), so the bucket translates both clients' errors in one place.
"""
from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import urllib3

RETRYABLE = frozenset({500, 502, 503, 504})  # botocore's standard retry mode, plus throttling
THROTTLED = frozenset({429, 408})
ATTEMPTS = 2  # as the listing client's ``total_max_attempts``


class S3Error(Exception):
    """An S3 error response (or no response): ``response`` as botocore's ClientError has it."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{status} {code} {message}".strip())
        self.response = {"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": status}}


def error_code(body: bytes) -> tuple[str, str]:
    """``<Error><Code>NoSuchKey</Code><Message>...`` of an S3 error body (REST API, Error
    Responses), without an XML parser for a body of a few hundred bytes."""
    text = body.decode("utf-8", "replace")

    def field(name: str) -> str:
        head, sep, rest = text.partition(f"<{name}>")
        return rest.partition(f"</{name}>")[0].strip() if sep else ""
    return field("Code"), field("Message")


def _pool(endpoint: str, size: int, timeout: float) -> urllib3.PoolManager:
    """A pool to the endpoint, through the environment's proxy as botocore would go
    (HTTPS_PROXY / HTTP_PROXY, NO_PROXY)."""
    kwargs: dict[str, Any] = {"maxsize": size, "block": False,
                              "timeout": urllib3.Timeout(connect=timeout, read=timeout),
                              "retries": False}
    parts = urllib.parse.urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **kwargs)
    return urllib3.PoolManager(**kwargs)


class ObjectGetter:
    """GET objects of one bucket; ``on_request`` is told of every HTTP request (retries too)."""

    def __init__(self, endpoint: str, bucket: str, *, region: str,
                 credentials: tuple[str, str] | None, timeout: float, pool_size: int,
                 on_request: Callable[[], None] = lambda: None) -> None:
        self.base = f"{endpoint.rstrip('/')}/{urllib.parse.quote(bucket, safe='')}/"
        self.region, self.on_request = region or "us-east-1", on_request
        self._credentials: Any = None
        if credentials:
            from botocore.credentials import Credentials
            self._credentials = Credentials(*credentials)
        self._http = _pool(endpoint, pool_size, timeout)

    def url(self, key: str) -> str:
        # SigV4's canonical URI of S3 is the key encoded once, '/' kept (S3 API, SigV4)
        return self.base + urllib.parse.quote(key, safe="/~")

    def _headers(self, url: str) -> dict[str, str]:
        if self._credentials is None:
            return {}
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        request = AWSRequest("GET", url)
        S3SigV4Auth(self._credentials, "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def open(self, key: str) -> urllib3.BaseHTTPResponse:
        """The object's response, its body not read yet (the caller streams and releases
        it). A missing key or a refusal is :class:`S3Error`; a 5xx, throttling or a
        connection error is tried once more, then raised."""
        url = self.url(key)
        for attempt in range(1, ATTEMPTS + 1):
            self.on_request()
            try:
                response = self._http.request("GET", url, headers=self._headers(url),
                                              preload_content=False, redirect=False)
            except urllib3.exceptions.HTTPError:
                if attempt == ATTEMPTS:
                    raise
                continue
            if response.status == 200:
                return response
            body = response.read(64 * 1024)
            response.release_conn()
            code, message = error_code(body)
            if attempt == ATTEMPTS or response.status not in RETRYABLE | THROTTLED:
                raise S3Error(response.status, code or str(response.status), message)
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        self._http.clear()
