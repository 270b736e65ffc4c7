"""Gateways on SeaweedFS: the settings and environment of an archive whose files are in S3."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import Settings
from tests.support.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed


def s3_changes(store: Seaweed, url: str, *, timeout: float = 2.0) -> dict[str, Any]:
    """Settings changes for STORE_URL=``url`` on ``store`` (credentials as settings)."""
    return {"store_url": url, "s3_endpoint_url": store.endpoint_url, "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": SECRET_KEY,
            "s3_timeout": timeout}


def s3_settings(store: Seaweed, data_dir: Path, url: str, **changes: Any) -> Settings:
    return Settings().replace(data_dir=data_dir, **{**s3_changes(store, url), **changes})


def s3_env(store: Seaweed, url: str, **changes: Any) -> dict[str, str]:
    """The same as GATEWAY_* variables, for gunicorn nodes."""
    values = {**s3_changes(store, url), **changes}
    return {"GATEWAY_" + k.upper(): str(v) for k, v in values.items()}
