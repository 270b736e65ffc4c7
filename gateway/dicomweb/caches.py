"""What the DICOMweb face keeps in memory, per app: one :class:`BoundedCache` each, sized by
the settings (GZIP_CACHE_BYTES, METADATA_CACHE_BYTES, RENDER_CACHE_ITEMS)."""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from ..cache import BoundedCache
from ..config import Settings

EXTENSION = "tcia_dicomweb"


@dataclass(frozen=True)
class RenderCaches:
    """Grey-level tables (render.py) and native image layouts (native.py)."""

    luts: BoundedCache[Hashable, Any]
    layouts: BoundedCache[Hashable, Any]


@dataclass(frozen=True)
class Caches:
    gzip: BoundedCache[str, bytes]                       # compressed bodies by ETag
    metadata: BoundedCache[Hashable, tuple[bytes, bytes, str]]  # absolute-URI bodies (wado.py)
    render: RenderCaches
    openapi: BoundedCache[str, bytes] = field(default_factory=lambda: BoundedCache(8))

    @classmethod
    def from_settings(cls, settings: Settings) -> Caches:
        return cls(
            gzip=BoundedCache(1 << 16, settings.gzip_cache_bytes),
            metadata=BoundedCache(1 << 16, settings.metadata_cache_bytes,
                                  size=lambda hit: len(hit[1])),
            # grey tables are 64 KiB at most (16-bit stored values): 4 MiB per 64
            render=RenderCaches(luts=BoundedCache(max(1, settings.render_cache_items // 64)),
                                layouts=BoundedCache(settings.render_cache_items)))


def caches() -> Caches:
    """The caches of the app serving this request."""
    return current_app.extensions[EXTENSION]
