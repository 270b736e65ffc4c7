"""Gzip the viewer's text bundles once at install time (``name.js`` → ``name.js.gz``).

The routes send the ``.gz`` sibling to clients that accept gzip, so no CPU is spent
compressing per request (gzipping the 17 MB app bundle takes seconds here). WebAssembly
is left alone by default: measured in docs/viewer.md.
"""
from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".js", ".css", ".json", ".svg", ".html")
MIN_SIZE = 1024
MAX_RATIO = 0.9     # keep the .gz only when it saves at least 10 %


@dataclass
class Precompressed:
    files: int = 0
    before: int = 0
    after: int = 0


def precompress(root: Path, suffixes: tuple[str, ...] = SUFFIXES,
                workers: int = 2) -> Precompressed:
    """Write ``.gz`` siblings for the build's top-level text files (zlib frees the GIL)."""
    paths = [p for p in sorted(root.iterdir())
             if p.is_file() and p.suffix in suffixes and p.stat().st_size >= MIN_SIZE]
    result = Precompressed()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for size, packed in pool.map(_gzip_one, paths):
            if packed:
                result.files += 1
                result.before += size
                result.after += packed
    return result


def _gzip_one(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    if len(packed) > MAX_RATIO * len(data):
        return len(data), 0
    target = path.with_name(path.name + ".gz")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(packed)
    os.replace(tmp, target)
    return len(data), len(packed)
