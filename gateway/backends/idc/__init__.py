"""The IDC backend (BACKEND=idc): NCI Imaging Data Commons' public buckets as the archive.

``open_idc`` builds the embedded archive (its index and cache store as the settings say),
loads IDC's series index into it once, and attaches the bucket. docs/idc.md.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ...archive.local import open_local
from ...archive.local.store import FileStore
from ...clinical import collections as C
from ...clinical.collections import load_facts
from ...clinical.repository import Repository
from ...clinical.resources import InvalidResource, validate
from ...config import Settings, SettingsError
from .archive import IdcArchive
from .bucket import Bucket, parse_bucket_url
from .catalog import default_index, ensure_loaded
from .evict import Evictor

__all__ = ["IdcArchive", "open_idc", "selected_collections"]
log = logging.getLogger(__name__)


def selected_collections(settings: Settings, names: dict[str, str]) -> list[str] | None:
    """IDC_COLLECTIONS as collection ids (None: all). Names and ids are both accepted,
    matched without regard to case against ``names`` (id → name, ``collections_index``)."""
    asked = [c.strip() for c in settings.idc_collections.split(",") if c.strip()]
    if not asked:
        return None
    by_key = {k.lower(): cid for cid, name in names.items() for k in (cid, name)}
    return sorted({by_key.get(item.lower(), item.lower().replace("-", "_")) for item in asked})


def open_idc(settings: Settings) -> IdcArchive:
    """The IDC archive of the settings, its index loaded (once per index file)."""
    try:
        parse_bucket_url(settings.idc_bucket_url)
    except ValueError as exc:
        raise SettingsError(f"GATEWAY_IDC_BUCKET_URL={settings.idc_bucket_url!r}: expected "
                            "s3://bucket[/prefix]") from exc
    base = open_local(settings)
    store = base.files
    archive = IdcArchive(settings.data_dir, settings.index_url,
                         duplicate_policy=settings.duplicate_policy,
                         metadata_cache_bytes=settings.metadata_cache_bytes, index=base.index,
                         objects=None if isinstance(store, FileStore) else (lambda _l: store),
                         files_dir=Path(store.files))  # STORE_URL=file://PATH as open_local
    path = Path(settings.idc_index) if settings.idc_index else default_index()
    if not path.is_file():
        raise SettingsError(f"GATEWAY_IDC_INDEX={str(path)!r}: no such parquet file")
    facts = load_facts(settings.data_dir / "cache")
    names = {f.collection_id: n for n, f in facts.items()}
    done = ensure_loaded(archive.index.engine, path, selected_collections(settings, names),
                         settings.data_dir, names=names)
    if done.get("loaded"):
        sync_research_studies(archive, facts)
    bucket = Bucket.from_settings(settings)
    evictor = Evictor(archive, max_bytes=settings.cache_max_bytes,
                      high=settings.cache_high_watermark, low=settings.cache_low_watermark,
                      lease=settings.cache_purge_delay)
    archive.attach(bucket, max_wait=max(60.0, settings.idc_timeout * 6), evictor=evictor)
    return archive


def sync_research_studies(archive: IdcArchive, facts: dict[str, C.CollectionFacts]) -> int:
    """One ResearchStudy per collection the loaded index holds (DOI, title, description,
    citation, licence from ``collections_index``), as an import makes them; how many."""
    resources = []
    for name in sorted(archive.collections()):
        resource = C.research_study(name, facts.get(name))
        try:
            validate(resource)
        except InvalidResource as exc:
            log.warning("not stored: %s", exc)
            continue
        resources.append(resource)
    repository = Repository(archive.index.engine)
    repository.replace_shared(["ResearchStudy"], resources)
    return len(resources)
