"""What a test sees of the store its data dir uses (GATEWAY_TEST_STORE=s3 or files)."""
from __future__ import annotations

from pathlib import Path

from gateway.archive.local import open_local
from gateway.config import Settings


def stored_objects(data_dir: Path) -> int:
    """Files under DATA_DIR/files, or the objects of the bucket prefix the index records."""
    archive = open_local(Settings().replace(data_dir=data_dir), sweep=False)
    try:
        store = archive.files
        if not hasattr(store, "bucket"):
            return sum(1 for _ in (data_dir / "files").rglob("*.dcm"))
        pages = store.client.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=store.prefix)
        return sum(len(page.get("Contents", [])) for page in pages)
    finally:
        archive.close()
