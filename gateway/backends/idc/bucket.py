"""The IDC bucket: one folder per series, ``<crdc_series_uuid>/<crdc_instance_uuid>.dcm``.

Reads only: a listing of a series folder and a GET per object. Every call is bounded as a
whole by IDC_TIMEOUT (botocore's socket timeouts bound one read, not a call:
a SIGSTOPped store made boto3 wait twice its read timeout), so a bucket that does not answer
is :class:`Unavailable` (503, Retry-After) in time, and a missing object is
:class:`UpstreamError` (502). Requests are unsigned unless credentials are given: the public
bucket ``s3://idc-open-data`` needs no account. The client counts the calls it makes
(``calls``; ``requests`` with botocore's retries), so tests and the bench can show what a
request cost in bucket calls.
"""
from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from ...archive.errors import Unavailable, UpstreamError
from ...archive.s3.store import parse_store_url
from ...config import Settings
from .objects import ObjectGetter

T = TypeVar("T")


@dataclass(frozen=True)
class BucketObject:
    key: str
    size: int


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` → (bucket, ``prefix/`` or ''): as STORE_URL is read."""
    return parse_store_url(url)


def bucket_client(settings: Settings) -> Any:
    """A boto3 client for the IDC bucket: unsigned unless IDC_ACCESS_KEY_ID is set; bounded
    connect/read timeouts and one retry."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    signature: Any = "s3v4" if settings.idc_access_key_id else UNSIGNED
    config = Config(connect_timeout=settings.idc_timeout, read_timeout=settings.idc_timeout,
                    retries={"total_max_attempts": 2, "mode": "standard"},
                    s3={"addressing_style": "path"}, signature_version=signature,
                    max_pool_connections=max(10, settings.idc_fetch_workers * 2))
    keys: dict[str, str] = {}
    if settings.idc_access_key_id:
        keys = {"aws_access_key_id": settings.idc_access_key_id,
                "aws_secret_access_key": settings.idc_secret_access_key}
    return boto3.client("s3", endpoint_url=settings.idc_endpoint_url or None,
                        region_name=settings.idc_region or None, config=config, **keys)


class Bucket:
    """Listing and reading the series folders of one bucket, each call bounded."""

    def __init__(self, client: Any, url: str, *, timeout: float, workers: int,
                 credentials: tuple[str, str] | None = None) -> None:
        self.client = client
        self.bucket, self.prefix = parse_bucket_url(url)
        self.objects = ObjectGetter(client.meta.endpoint_url, self.bucket,
                                    region=client.meta.region_name, credentials=credentials,
                                    timeout=timeout, pool_size=max(10, workers * 2),
                                    on_request=lambda: self._count_request(".GetObject"))
        self.url, self.timeout, self.workers = url.rstrip("/"), timeout, max(1, workers)
        self.calls: Counter[str] = Counter()  # S3 operation → API calls made
        self.requests: Counter[str] = Counter()  # S3 operation → HTTP requests (retries too)
        self._calls_lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max(2, workers + 1), thread_name_prefix="idc-bucket")
        client.meta.events.register("before-call.s3.*", self._count_call)
        client.meta.events.register("before-send.s3.*", self._count_request)

    def _count_call(self, event_name: str = "", **_: Any) -> None:
        """botocore ``before-call.s3.<Operation>``: one API call (its retries not counted)."""
        with self._calls_lock:
            self.calls[event_name.rsplit(".", 1)[-1] or "call"] += 1

    def _count_request(self, event_name: str = "", **_: Any) -> None:
        """botocore ``before-send.s3.<Operation>``: one HTTP request about to go out."""
        with self._calls_lock:
            self.requests[event_name.rsplit(".", 1)[-1] or "request"] += 1

    def _call(self, what: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        future = self._pool.submit(fn, **kwargs)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise Unavailable(f"IDC bucket {self.url} did not answer {what} within "
                              f"IDC_TIMEOUT={self.timeout:g}s") from None
        except Exception as exc:  # botocore's family, imported lazily
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
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token
            page = self._call(f"the listing of {prefix}", self.client.list_objects_v2, **args)
            found += [BucketObject(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found

    def read_into(self, obj: BucketObject, receive: Callable[[IO[bytes]], T]) -> T:
        """GET one object and hand its body stream to ``receive`` (which writes it to the
        spool as it arrives); the whole call is bounded, the object never whole in memory."""
        def get() -> T:
            self._count_call(".GetObject")
            response = self.objects.open(obj.key)
            try:
                return receive(response)  # type: ignore[arg-type]  # read(n) is all it uses
            except BaseException:
                response.close()  # part of a body left unread: the connection cannot be reused
                raise
            finally:
                response.release_conn()
        return self._call(f"object {obj.key}", get)

    def map(self, fn: Callable[[BucketObject], T], objects: list[BucketObject]) -> Iterator[T]:
        """``fn`` over ``objects`` on the bucket's threads (each ``fn`` bounds its own calls)."""
        with concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix="idc-fetch") as ex:
            yield from ex.map(fn, objects)

    def ping(self) -> None:
        """Ready: a one-key listing answers (what IDC documents for anonymous access,
        ``aws s3 ls --no-sign-request``; HeadBucket needs the same permission)."""
        self._call("a listing", self.client.list_objects_v2, Bucket=self.bucket,
                   Prefix=self.prefix, MaxKeys=1)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.objects.close()
