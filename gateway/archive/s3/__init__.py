"""The object store backend of the embedded archive (STORE_URL=s3://bucket/prefix)."""
from __future__ import annotations

from typing import Any

from ...config import Settings
from .hot import HotCache
from .store import S3Store, SpoolSide, parse_store_url

__all__ = ["HotCache", "S3Store", "open_s3", "parse_store_url"]


def s3_client(settings: Settings) -> Any:
    """A boto3 client with bounded timeouts and retries (botocore's ``total_max_attempts``
    counts the first try; its ``max_attempts`` would pay every timeout once more)."""
    import boto3
    from botocore.config import Config
    config = Config(connect_timeout=settings.s3_timeout, read_timeout=settings.s3_timeout,
                    retries={"total_max_attempts": 2, "mode": "standard"},
                    s3={"addressing_style": "path"}, signature_version="s3v4",
                    max_pool_connections=32)
    keys: dict[str, str] = {}
    if settings.s3_access_key_id:  # else the standard AWS chain (env, profile, role)
        keys = {"aws_access_key_id": settings.s3_access_key_id,
                "aws_secret_access_key": settings.s3_secret_access_key}
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None,
                        region_name=settings.s3_region or None, config=config, **keys)


def open_s3(settings: Settings, local: SpoolSide) -> S3Store:
    """The store STORE_URL names, spooling into ``local`` and caching under DATA_DIR/hot."""
    bucket, prefix = parse_store_url(settings.store_url)
    hot = HotCache(settings.data_dir / "hot", settings.cache_max_bytes)
    return S3Store(local, s3_client(settings), bucket, prefix, timeout=settings.s3_timeout,
                   multipart_threshold=settings.s3_multipart_threshold, hot=hot)
