"""The S3 REST calls of the IDC backend as plain HTTP: GetObject and ListObjectsV2 without
botocore's per-call work.

A cold series is CPU-bound on a small machine: here botocore spent ~2.3 ms of CPU per
GetObject of a 512x512 CT slice (its event hooks, request model and response parsing), more
than the spool, hash and parse of the object together, and ~10 ms per listing of a
72-object folder (it parses every LastModified with dateutil); a GET through urllib3 (which
botocore itself sends with) costs ~1 ms. So both are sent here (path-style
``{endpoint}/{bucket}/{key}``), signed with Signature Version 4 (:mod:`.sigv4`) only when
credentials are given: ``idc-open-data`` is public and read unsigned. Each call runs in the
caller's thread, bounded by a deadline: the socket's timeout is what is left of it before
every read, so a store that stops answering fails the call in time.

Errors are raised in botocore's shape (:class:`S3Error` has ``response`` like a
``ClientError``), so the bucket translates them in one place.
"""
from __future__ import annotations

import io
import socket
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import urllib3

from .sigv4 import Signer, canonical_query

RETRYABLE = frozenset({500, 502, 503, 504})  # botocore's standard retry mode, plus throttling
THROTTLED = frozenset({429, 408})
ATTEMPTS = 2  # as the listing client's ``total_max_attempts``


S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class Deadline(Exception):
    """The call's deadline passed (the bucket translates it to 503)."""


@dataclass(frozen=True)
class ListPage:
    """One ListObjectsV2 answer: (key, size) of each object, and the token of the next page."""

    objects: list[tuple[str, int]]
    next_token: str | None


def parse_list_page(body: bytes) -> ListPage:
    """``ListBucketResult`` (S3 API, ListObjectsV2 response syntax): Contents' Key and Size,
    and NextContinuationToken when IsTruncated."""
    root = ET.fromstring(body)
    ns = S3_NS if root.tag.startswith(S3_NS) else ""
    objects = [(c.findtext(f"{ns}Key") or "", int(c.findtext(f"{ns}Size") or 0))
               for c in root.iter(f"{ns}Contents")]
    truncated = (root.findtext(f"{ns}IsTruncated") or "").strip().lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") if truncated else None
    return ListPage(objects, token or None)


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


def default_endpoint(region: str) -> str:
    """AWS's own S3 endpoint of ``region`` (path-style, as botocore addresses it)."""
    return ("https://s3.amazonaws.com" if region in ("", "us-east-1")
            else f"https://s3.{region}.amazonaws.com")


class ObjectGetter:
    """GET objects and folder listings of one bucket; ``on_request(operation)`` is told of
    every HTTP request (retries too)."""

    def __init__(self, endpoint: str, bucket: str, *, region: str,
                 credentials: tuple[str, str] | None, timeout: float, pool_size: int,
                 on_request: Callable[[str], None] = lambda _op: None) -> None:
        self.region = region or "us-east-1"
        endpoint = (endpoint or default_endpoint(self.region)).rstrip("/")
        parts = urllib.parse.urlsplit(endpoint)
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        self.host = (parts.hostname or "") + (f":{parts.port}" if parts.port and
                                               parts.port != default_port else "")
        self.path = f"{parts.path}/{urllib.parse.quote(bucket, safe='')}"
        self.base = f"{endpoint}/{urllib.parse.quote(bucket, safe='')}/"
        self.on_request, self.timeout = on_request, timeout
        self._signer = Signer(*credentials, self.region) if credentials else None
        self._http = _pool(endpoint, pool_size, timeout)
        self._origin = f"{parts.scheme}://{parts.netloc}"

    def url(self, key: str) -> str:
        # SigV4's canonical URI of S3 is the key encoded once, '/' kept (S3 API, SigV4)
        return self.base + urllib.parse.quote(key, safe="/~")

    def _headers(self, path: str, query: str = "") -> dict[str, str]:
        if self._signer is None:
            return {}
        return {"Host": self.host, **self._signer.headers(self.host, path, query)}

    def open(self, key: str, deadline: float | None = None) -> urllib3.BaseHTTPResponse:
        """The object's response, its body not read yet (the caller streams it with
        :func:`copy_body` and releases it)."""
        return self._get(self.path + "/" + urllib.parse.quote(key, safe="/~"), "",
                         "GetObject", deadline)

    def list_page(self, prefix: str, token: str | None = None, max_keys: int = 1000,
                  deadline: float | None = None) -> ListPage:
        """One page of ListObjectsV2 under ``prefix``."""
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys)}
        if token:
            params["continuation-token"] = token
        response = self._get(self.path, canonical_query(params), "ListObjectsV2", deadline)
        try:
            body = read_all(response, deadline)
        finally:
            response.release_conn()
        try:
            return parse_list_page(body)
        except (ET.ParseError, ValueError) as exc:
            raise S3Error(502, "MalformedListing", str(exc)) from None

    def _get(self, path: str, query: str, operation: str,
             deadline: float | None) -> urllib3.BaseHTTPResponse:
        """GET ``path?query``. A missing key or a refusal is :class:`S3Error`; a 5xx,
        throttling or a connection error is tried once more, then raised."""
        url = self._origin + path + (f"?{query}" if query else "")
        for attempt in range(1, ATTEMPTS + 1):
            self.on_request(operation)
            left = remaining(deadline, self.timeout)
            try:
                response = self._http.request(
                    "GET", url, headers=self._headers(path, query), preload_content=False,
                    redirect=False, timeout=urllib3.Timeout(connect=left, read=left))
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


def remaining(deadline: float | None, timeout: float) -> float:
    """Seconds left before ``deadline`` (``timeout`` when there is none); :class:`Deadline`
    once it passed."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise Deadline()
    return left


def _sock(response: urllib3.BaseHTTPResponse) -> socket.socket | None:
    connection = getattr(response, "connection", None)
    return getattr(connection, "sock", None)


def copy_body(response: urllib3.BaseHTTPResponse, out: IO[bytes],
              deadline: float | None = None, chunk: int = 1 << 20) -> int:
    """Stream the body into ``out`` without holding it whole; before every read the
    socket may wait only what is left of ``deadline``. How many bytes."""
    sock, total = _sock(response), 0
    while True:
        if deadline is not None and sock is not None:
            sock.settimeout(remaining(deadline, 0))
        data = response.read(chunk)
        if not data:
            return total
        out.write(data)
        total += len(data)


def read_all(response: urllib3.BaseHTTPResponse, deadline: float | None = None) -> bytes:
    """A small body (a listing page) whole, within ``deadline``."""
    buffer = io.BytesIO()
    copy_body(response, buffer, deadline)
    return buffer.getvalue()
