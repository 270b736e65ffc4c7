"""The object store backend: every instance one object in an S3 bucket (AWS S3, MinIO, Ceph
RGW, SeaweedFS), behind :class:`gateway.archive.files.FileStore`.

Uploads are spooled to the node's local ``tmp/`` first (hashed as they arrive), then sent:
one conditional PUT (``If-None-Match: *``, write-once) or, above S3_MULTIPART_THRESHOLD, a
multipart upload read part by part from the spooled file, so no object is ever whole in
memory. Keys carry no UIDs: a digest prefix spreads them (as Orthanc's and Microsoft's
object stores do) and a random suffix makes every write a fresh key, so an index row never
points at an object that a later write or the orphan sweeper could change.

Every call is bounded by S3_TIMEOUT as a whole (botocore's socket timeouts bound one read,
not a call: a SIGSTOPped server made one call wait twice the read timeout), and a store
that does not answer in time is :class:`Unavailable` (503 with Retry-After).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, TypeVar
from urllib.parse import urlsplit

from ..errors import Unavailable
from ..files import Received
from .hot import HotCache

T = TypeVar("T")
CHUNK = 1 << 20
UPLOADS = 8               # PUTs of one commit in flight at once
AHEAD = 4                 # objects a retrieve fetches ahead of the one it sends
AHEAD_MAX = 64 << 20      # larger objects are streamed, not fetched ahead into the hot cache
PART_MIN = 5 << 20  # S3's smallest part but the last


def parse_store_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, ``prefix/`` or '')."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, (prefix + "/") if prefix else ""


class SpoolSide(Protocol):
    """The node-local side of a store: temp files being received (the local FileStore)."""

    root: Path
    tmp: Path
    files: Path

    def spool(self) -> Any: ...
    def receive(self, source: Path | IO[bytes]) -> Received: ...
    def spool_bytes(self, data: bytes) -> Path: ...
    def hash_file(self, path: Path) -> Received: ...
    def sweep(self, older_than: float) -> int: ...
    def stale_parts(self, older_than: float) -> list[Path]: ...
    def exclusive(self) -> contextlib.AbstractContextManager[None]: ...
    def write_refusal(self) -> str: ...


class S3Store:
    """Objects in ``bucket`` under ``prefix``; temp files and the hot cache on this node."""

    def __init__(self, local: SpoolSide, client: Any, bucket: str, prefix: str, *,
                 timeout: float, multipart_threshold: int, hot: HotCache) -> None:
        self.local = local
        self.root, self.tmp, self.files = local.root, local.tmp, local.files
        self.client = client
        self.bucket, self.prefix = bucket, prefix
        self.timeout = timeout
        self.part_size = max(PART_MIN, min(multipart_threshold, 64 << 20))
        self.multipart_threshold = multipart_threshold
        self.hot = hot
        self._pool = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="s3")
        # uploads of one commit run side by side (:meth:`flush` waits); reads run ahead
        self._uploads = concurrent.futures.ThreadPoolExecutor(UPLOADS, thread_name_prefix="s3-put")
        self._fetches = concurrent.futures.ThreadPoolExecutor(AHEAD * 2,
                                                              thread_name_prefix="s3-get")
        self._pending: list[concurrent.futures.Future[None]] = []
        self._pending_lock = threading.Lock()
        self.url = f"s3://{bucket}/{prefix}"

    # ------------------------------------------------------- the bound on every call
    def _call(self, what: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """``fn(**kwargs)`` answered within S3_TIMEOUT, else Unavailable; a missing key is
        FileNotFoundError (the read paths' 'stored file missing')."""
        future = self._pool.submit(fn, **kwargs)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise Unavailable(f"object store {self.url} did not answer {what} within "
                              f"S3_TIMEOUT={self.timeout:g}s") from None
        except Exception as exc:  # botocore's own family, imported lazily
            raise self._translate(what, exc) from exc

    def _translate(self, what: str, exc: Exception) -> Exception:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound"):
            return FileNotFoundError(f"object {what} is missing from {self.url}")
        if code in ("PreconditionFailed", "412"):
            return FileExistsError(f"object {what} exists in {self.url}")
        if isinstance(status, int) and status < 500 and status not in (408, 429):
            return OSError(f"object store {self.url} refused {what}: {code or status}")
        return Unavailable(f"object store {self.url} failed {what}: "
                           f"{code or exc.__class__.__name__}")

    def ping(self) -> None:
        """Ready: the bucket answers (HEAD) within S3_TIMEOUT."""
        self._call("HEAD bucket", self.client.head_bucket, Bucket=self.bucket)

    def close(self) -> None:
        for pool in (self._uploads, self._fetches, self._pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------- the local side
    def spool(self) -> Any:
        return self.local.spool()

    def receive(self, source: Path | IO[bytes]) -> Received:
        return self.local.receive(source)

    def spool_bytes(self, data: bytes) -> Path:
        return self.local.spool_bytes(data)

    def hash_file(self, path: Path) -> Received:
        return self.local.hash_file(path)

    def sweep(self, older_than: float) -> int:
        return self.local.sweep(older_than)

    def stale_parts(self, older_than: float) -> list[Path]:
        return self.local.stale_parts(older_than)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self.local.exclusive()

    def write_refusal(self) -> str:
        return self.local.write_refusal()

    # ------------------------------------------------------- objects
    def key(self, study: str, series: str, sop: str, sha256: str) -> str:
        """``<d0d1>/<d2d3>/<digest[:32]>-<random>``: no UID, a fresh key per write."""
        del study, series, sop  # keys carry no UIDs (PHI-free bucket listings)
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256[:32]}-{secrets.token_hex(8)}"

    def put(self, received: Received, key: str) -> None:
        """Start uploading the spooled file (write-once); :meth:`flush` waits for it. The
        index row comes after the flush: object first, row last."""
        future = self._uploads.submit(self.put_now, received, key)
        with self._pending_lock:
            self._pending.append(future)

    def flush(self) -> None:
        """Wait for every upload started by :meth:`put`; raise the first failure."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        for exc in errors:
            if exc is not None:
                raise exc

    def put_now(self, received: Received, key: str) -> None:
        """Upload the spooled file write-once (the archive drops the spooled file once the
        row is committed). An existing key is fine: only the same digest is ever put under
        an existing key (a repeated instance)."""
        try:
            if received.size < self.multipart_threshold:
                with open(received.path, "rb") as fh:
                    self._call(f"PUT {key}", self.client.put_object, Bucket=self.bucket,
                               Key=self.prefix + key, Body=fh, ContentLength=received.size,
                               IfNoneMatch="*")
            else:
                self._multipart(received, key)
        except FileExistsError:
            pass

    def _multipart(self, received: Received, key: str) -> None:
        full = self.prefix + key
        upload = self._call(f"CreateMultipartUpload {key}", self.client.create_multipart_upload,
                            Bucket=self.bucket, Key=full)["UploadId"]
        try:
            parts = []
            with open(received.path, "rb") as fh:
                number = 1
                while data := fh.read(self.part_size):  # one part in memory at a time
                    etag = self._call(f"UploadPart {key}#{number}", self.client.upload_part,
                                      Bucket=self.bucket, Key=full, UploadId=upload,
                                      PartNumber=number, Body=data)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
                    number += 1
            self._call(f"CompleteMultipartUpload {key}", self.client.complete_multipart_upload,
                       Bucket=self.bucket, Key=full, UploadId=upload, IfNoneMatch="*",
                       MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self._call("AbortMultipartUpload", self.client.abort_multipart_upload,
                           Bucket=self.bucket, Key=full, UploadId=upload)
            raise

    def exists(self, key: str) -> bool:
        try:
            self._call(f"HEAD {key}", self.client.head_object, Bucket=self.bucket,
                       Key=self.prefix + key)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call(f"DELETE {key}", self.client.delete_object, Bucket=self.bucket,
                   Key=self.prefix + key)
        self.hot.path(HotCache.name(key)).unlink(missing_ok=True)

    def _get(self, key: str, byte_range: str | None = None) -> Any:
        extra = {"Range": byte_range} if byte_range else {}
        return self._call(f"GET {key}", self.client.get_object, Bucket=self.bucket,
                          Key=self.prefix + key, **extra)["Body"]

    def chunks(self, key: str, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """The object streamed (each read bounded by the client's read timeout); exactly
        ``size`` bytes or OSError, so a multipart framing never silently breaks."""
        cached = self.hot.get(HotCache.name(key))
        if cached is not None:
            yield from _file_chunks(cached, chunk)
            return
        body = self._get(key)
        left = size
        try:
            for data in body.iter_chunks(chunk):
                left -= len(data)
                yield data
        except Exception as exc:
            raise OSError(f"object {key} of {self.url} cut after {size - left} bytes: "
                          f"{exc.__class__.__name__}") from exc
        finally:
            body.close()
        if left:
            raise OSError(f"object {key} of {self.url} has {size - left} bytes, not {size}")

    def cached(self, key: str) -> Path | None:
        """The object's file in the hot cache, if it is there."""
        return self.hot.get(HotCache.name(key))

    def bodies(self, items: Sequence[tuple[str, int]], chunk: int = CHUNK
               ) -> Iterator[Iterator[bytes]]:
        """The bodies of several objects in order (a series retrieve), each fetched into
        the hot cache up to AHEAD objects ahead of the one being sent: the store's
        latency is paid side by side, not once per instance."""
        futures: dict[int, concurrent.futures.Future[Path]] = {}
        for n, (key, size) in enumerate(items):
            for j in range(n, min(n + AHEAD, len(items))):
                if j not in futures and items[j][1] <= AHEAD_MAX:
                    futures[j] = self._fetches.submit(self.local_copy, *items[j])
            future = futures.pop(n, None)
            path = future.result() if future is not None else None
            if path is not None and path.exists():
                yield _exact_chunks(path, size, chunk)
            else:  # large, or evicted from a small hot cache meanwhile: streamed
                yield self.chunks(key, size, chunk)

    def open(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def read(self, key: str, offset: int, length: int) -> bytes:
        return self.read_ranges(key, [(offset, length)])

    def hot_path(self, key: str) -> Path:
        """Where the hot cache keeps ``key`` (it may not be there yet)."""
        return self.hot.path(HotCache.name(key))

    def local_path(self, key: str) -> Path:
        """The object as a local file (the hot cache), fetched if absent: what pydicom, the
        renderer and the transcoder read."""
        return self.local_copy(key, -1)

    def local_copy(self, key: str, size: int) -> Path:
        name = HotCache.name(key)
        cached = self.hot.get(name)
        if cached is not None:
            return cached
        if size < 0:
            size = int(self._call(f"HEAD {key}", self.client.head_object, Bucket=self.bucket,
                                  Key=self.prefix + key)["ContentLength"])
        return self.hot.put(name, self.chunks(key, size))

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> bytes:
        """The bytes of ``ranges`` (offset, length) joined: a frame. From the hot cache when
        the frame or the whole object is there, else ranged GETs (one when contiguous)."""
        whole = self.hot.get(HotCache.name(key))
        if whole is not None:
            return _pread_all(whole, ranges)
        name = HotCache.name(key, "ranges", repr(list(ranges)))
        cached = self.hot.read(name)
        if cached is not None:
            return cached
        data = self._spans(key, ranges)
        self.hot.put(name, [data])
        return data

    def _spans(self, key: str, ranges: Sequence[tuple[int, int]]) -> bytes:
        """One ranged GET from the first byte to the last, cut into the ranges (the item
        headers between a frame's fragments are a few bytes)."""
        ranges = [(o, n) for o, n in ranges if n > 0]
        if not ranges:
            return b""
        start = min(o for o, _n in ranges)
        end = max(o + n for o, n in ranges)
        body = self._get(key, f"bytes={start}-{end - 1}")
        try:
            data = self._call(f"GET {key} body", body.read)
        finally:
            body.close()
        if len(data) != end - start:
            raise OSError(f"object {key}: {len(data)} bytes at {start}, not {end - start}")
        view = memoryview(data)
        return b"".join(view[o - start:o - start + n] for o, n in ranges)

    # ------------------------------------------------------- orphans
    def sweep_orphans(self, known: Callable[[Sequence[str]], set[str]], grace: float) -> int:
        """Delete objects older than ``grace`` seconds that no index row points at (left by
        a node that died between its PUT and its commit); how many."""
        limit = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=grace)
        removed = 0
        for batch in self._old_keys(limit):
            for key in set(batch) - known(batch):
                self.delete(key)
                removed += 1
        return removed

    def _old_keys(self, limit: datetime.datetime) -> Iterator[list[str]]:
        token: dict[str, str] = {}
        while True:
            page = self._call("LIST", self.client.list_objects_v2, Bucket=self.bucket,
                              Prefix=self.prefix, MaxKeys=1000, **token)
            batch = [o["Key"][len(self.prefix):] for o in page.get("Contents", [])
                     if o["LastModified"] <= limit]
            if batch:
                yield batch
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}


def _pread_all(path: Path, ranges: Sequence[tuple[int, int]]) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return b"".join(os.pread(fd, n, o) for o, n in ranges)
    finally:
        os.close(fd)


def _exact_chunks(path: Path, size: int, chunk: int) -> Iterator[bytes]:
    left = size
    for data in _file_chunks(path, chunk):
        left -= len(data)
        yield data
    if left:
        raise OSError(f"{path} ended {left} bytes short of {size}")


def _file_chunks(path: Path, chunk: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            yield data
