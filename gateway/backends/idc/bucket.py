"""The IDC bucket: one folder per series, ``<crdc_series_uuid>/<crdc_instance_uuid>.dcm``.

Reads only: a listing of a series folder and a GET per object (plain HTTP, :mod:`.objects`).
Every call is bounded as a whole by IDC_TIMEOUT: a deadline, not a timeout per socket read
(that bounds one read, not a call: a SIGSTOPped store made boto3 wait twice its read
timeout), so a bucket that does not answer is :class:`Unavailable` (503, Retry-After) in
time, and a missing object is :class:`UpstreamError` (502). Requests are unsigned unless
credentials are given: the public bucket ``s3://idc-open-data`` needs no account. The bucket
counts the calls it makes (``calls``; ``requests`` with retries), so tests and the bench
can show what a request cost in bucket calls.
"""
from __future__ import annotations

import functools
import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TypeVar

from ...archive.errors import Unavailable, UpstreamError
from ...archive.s3.store import parse_store_url
from ...config import Settings
from .objects import Deadline, ListPage, ObjectGetter, S3Error

T = TypeVar("T")


@dataclass(frozen=True)
class BucketObject:
    key: str
    size: int


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, ``prefix/`` or ''): as STORE_URL is read."""
    return parse_store_url(url)


class Bucket:
    """Listing and reading the series folders of one bucket, each call bounded."""

    def __init__(self, url: str, *, endpoint: str = "", region: str = "us-east-1",
                 timeout: float, workers: int,
                 credentials: tuple[str, str] | None = None) -> None:
        self.bucket, self.prefix = parse_bucket_url(url)
        self.objects = ObjectGetter(endpoint, self.bucket, region=region,
                                    credentials=credentials, timeout=timeout,
                                    pool_size=max(10, workers * 2),
                                    on_request=self._count_request)
        self.url, self.timeout, self.workers = url.rstrip("/"), timeout, max(1, workers)
        self.calls: Counter[str] = Counter()  # S3 operation → API calls made
        self.requests: Counter[str] = Counter()  # S3 operation → HTTP requests (retries too)
        self._calls_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Bucket":
        keys = ((settings.idc_access_key_id, settings.idc_secret_access_key)
                if settings.idc_access_key_id else None)
        return cls(settings.idc_bucket_url, endpoint=settings.idc_endpoint_url,
                   region=settings.idc_region, credentials=keys,
                   timeout=settings.idc_timeout, workers=settings.idc_fetch_workers)

    def _count_call(self, operation: str) -> None:
        with self._calls_lock:
            self.calls[operation] += 1

    def _count_request(self, operation: str) -> None:
        with self._calls_lock:
            self.requests[operation] += 1

    def _call(self, what: str, operation: str, fn: Callable[[float], T]) -> T:
        """``fn(deadline)`` in this thread, IDC_TIMEOUT from now; its errors translated."""
        self._count_call(operation)
        try:
            return fn(time.monotonic() + self.timeout)
        except (Deadline, TimeoutError):
            raise Unavailable(f"IDC bucket {self.url} did not answer {what} within "
                              f"IDC_TIMEOUT={self.timeout:g}s") from None
        except (S3Error, OSError, http.client.HTTPException) as exc:
            raise self._translate(what, exc) from exc

    def _translate(self, what: str, exc: Exception) -> Exception:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            return UpstreamError(f"IDC bucket {self.url}: {what} is missing ({code})")
        if isinstance(status, int) and status < 500 and status not in (408, 429):
            return UpstreamError(f"IDC bucket {self.url} refused {what}: {code or status}")
        return Unavailable(f"IDC bucket {self.url} failed {what}: "
                           f"{code or exc.__class__.__name__}")

    def series_objects(self, folder: str) -> list[BucketObject]:
        """The objects of one series folder (one ListObjectsV2 per 1000 objects)."""
        prefix = f"{self.prefix}{folder.strip('/')}/"
        found: list[BucketObject] = []
        token: str | None = None
        while True:
            page = self._call(f"the listing of {prefix}", "ListObjectsV2",
                              functools.partial(self._list_page, prefix, token))
            found += [BucketObject(key, size) for key, size in page.objects]
            token = page.next_token
            if not token:
                return found

    def _list_page(self, prefix: str, token: str | None, deadline: float) -> ListPage:
        return self.objects.list_page(prefix, token, deadline=deadline)

    def read_into(self, obj: BucketObject, receive: Callable[[Callable[[IO[bytes]], int]], T]
                  ) -> T:
        """GET one object and hand ``receive`` a function that copies the body into the
        file it is given as it arrives (never whole in memory), within IDC_TIMEOUT; in the
        caller's thread (a hop to another thread per object cost CPU a cold series lacks)."""
        def get(deadline: float) -> T:
            return receive(lambda out: self.objects.get_into(obj.key, out, deadline))
        return self._call(f"object {obj.key}", "GetObject", get)

    def ping(self) -> None:
        """Ready: a one-key listing answers (what IDC documents for anonymous access,
        ``aws s3 ls --no-sign-request``; HeadBucket needs the same permission)."""
        self._call("a listing", "ListObjectsV2", lambda deadline: self.objects.list_page(
            self.prefix, max_keys=1, deadline=deadline))

    def close(self) -> None:
        self.objects.close()
