"""The S3 REST calls of the IDC backend as plain HTTP: GetObject and ListObjectsV2 without
botocore's per-call work.

A cold series is CPU-bound on a small machine: here botocore spent ~2.3 ms of CPU per
GetObject of a 512x512 CT slice (its event hooks, request model and response parsing), more
than the spool, hash and parse of the object together, and ~10 ms per listing of a
72-object folder (it parses every LastModified with dateutil); a GET on a kept
:mod:`http.client` connection (:mod:`.connections`) costs ~1 ms. So both are sent here (path-style
``{endpoint}/{bucket}/{key}``), signed with Signature Version 4 (:mod:`.sigv4`) only when
credentials are given: ``idc-open-data`` is public and read unsigned. Each call runs in the
caller's thread, bounded by a deadline: the socket's timeout is what is left of it before
every read, so a store that stops answering fails the call in time.

Errors are raised in botocore's shape (:class:`S3Error` has ``response`` like a
``ClientError``), so the bucket translates them in one place.
"""
from __future__ import annotations

import http.client
import io
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .connections import Connections
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
        self._http = Connections(endpoint, size=pool_size)

    def url(self, key: str) -> str:
        # SigV4's canonical URI of S3 is the key encoded once, '/' kept (S3 API, SigV4)
        return self.base + urllib.parse.quote(key, safe="/~")

    def _headers(self, path: str, query: str = "") -> dict[str, str]:
        if self._signer is None:
            return {}
        return {"Host": self.host, **self._signer.headers(self.host, path, query)}

    def get_into(self, key: str, out: IO[bytes], deadline: float | None = None) -> int:
        """GET the object into ``out`` as it arrives (never whole in memory); its size."""
        path = self.path + "/" + urllib.parse.quote(key, safe="/~")
        conn, response = self._get(path, "", "GetObject", deadline)
        try:
            return copy_body(response, out, deadline, conn)
        finally:
            self._http.done(conn, response)

    def list_page(self, prefix: str, token: str | None = None, max_keys: int = 1000,
                  deadline: float | None = None) -> ListPage:
        """One page of ListObjectsV2 under ``prefix``."""
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys)}
        if token:
            params["continuation-token"] = token
        conn, response = self._get(self.path, canonical_query(params), "ListObjectsV2", deadline)
        buffer = io.BytesIO()
        try:
            copy_body(response, buffer, deadline, conn)
        finally:
            self._http.done(conn, response)
        try:
            return parse_list_page(buffer.getvalue())
        except (ET.ParseError, ValueError) as exc:
            raise S3Error(502, "MalformedListing", str(exc)) from None

    def _get(self, path: str, query: str, operation: str, deadline: float | None
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET ``path?query``, its status 200. A missing key or a refusal is
        :class:`S3Error`; a 5xx, throttling or a connection error (a kept connection the
        server closed meanwhile too) is tried once more, then raised."""
        target = path + (f"?{query}" if query else "")
        for attempt in range(1, ATTEMPTS + 1):
            self.on_request(operation)
            left = remaining(deadline, self.timeout)
            try:
                conn, response = self._http.get(target, self._headers(path, query), left)
            except TimeoutError:
                raise
            except (OSError, http.client.HTTPException):
                if attempt == ATTEMPTS:
                    raise
                continue
            if response.status == 200:
                return conn, response
            body = response.read(64 * 1024)
            self._http.done(conn, response)
            code, message = error_code(body)
            if attempt == ATTEMPTS or response.status not in RETRYABLE | THROTTLED:
                raise S3Error(response.status, code or str(response.status), message)
        raise AssertionError("unreachable")  # the loop returns or raises

    def close(self) -> None:
        self._http.close()


def remaining(deadline: float | None, timeout: float) -> float:
    """Seconds left before ``deadline`` (``timeout`` when there is none); :class:`Deadline`
    once it passed."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise Deadline()
    return left


def copy_body(response: http.client.HTTPResponse, out: IO[bytes], deadline: float | None,
              conn: http.client.HTTPConnection, chunk: int = 1 << 18) -> int:
    """Stream the body into ``out`` with ``readinto`` (no copy per chunk); before every
    read the socket may wait only what is left of ``deadline``. How many bytes."""
    buffer = memoryview(bytearray(chunk))
    total = 0
    while True:
        if deadline is not None and conn.sock is not None:
            conn.sock.settimeout(remaining(deadline, 0))
        n = response.readinto(buffer)
        if not n:
            return total
        out.write(buffer[:n])
        total += n


