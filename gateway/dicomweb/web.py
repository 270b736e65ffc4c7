"""HTTP plumbing shared by the DICOMweb views: public links, Accept, JSON responses with
ETag / If-None-Match (RFC 7232) and gzip when the client asks (never for pixel data).
"""
from __future__ import annotations

import hashlib
import threading
import zlib
from collections import OrderedDict

from flask import Response, request

from .. import context
from .media import MediaRange, parse_accept

GZIP_MIN = 1024           # smaller JSON bodies go out as they are
GZIP_CACHE_BYTES = 64 << 20


def dicomweb_root() -> str:
    return context.public_base() + "/dicomweb"


def accept() -> list[MediaRange]:
    return parse_accept(request.headers.get("Accept"))


def etag_of(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def _client_has(etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"').removesuffix("-gz") for t in header.split(",")}
    return etag in tags or "*" in tags


def wants_gzip() -> bool:
    """Accept-Encoding names gzip with a non-zero q (RFC 7231 5.3.4)."""
    for item in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = params.replace(" ", "").lower().removeprefix("q=") or "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


class GzipCache:
    """Compressed bodies by ETag: warm metadata requests never compress twice."""

    def __init__(self, max_bytes: int = GZIP_CACHE_BYTES) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, etag: str, body: bytes) -> bytes:
        with self._lock:
            hit = self._items.get(etag)
            if hit is not None:
                self._items.move_to_end(etag)
                return hit
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: JSON shrinks ~8x anyway
        packed = packer.compress(body) + packer.flush()
        with self._lock:
            if etag not in self._items:
                self._items[etag] = packed
                self._bytes += len(packed)
            while self._bytes > self._max and self._items:
                _k, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return packed


GZIP = GzipCache()


def json_response(body: bytes, mimetype: str, *, etag: str | None = None,
                  status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer with validators: 304 when the client's copy is current."""
    etag = etag or etag_of(body)
    extra = {"Cache-Control": "no-cache", "Vary": "Accept, Accept-Encoding", **(headers or {})}
    packed = len(body) >= GZIP_MIN and wants_gzip()
    tag = etag + "-gz" if packed else etag  # a strong ETag names one representation
    if _client_has(etag):
        response = Response(status=304, headers=extra)
        response.headers["ETag"] = f'"{tag}"'
        return response
    if packed:
        body = GZIP.get(etag, body)
        extra["Content-Encoding"] = "gzip"
    response = Response(body, status=status, headers=extra)
    response.headers["Content-Type"] = mimetype  # exactly, without a charset parameter
    response.headers["ETag"] = f'"{tag}"'
    return response
