"""The node's hot cache: recently read objects and frames of the object store, on local disk.

Bounded in bytes (CACHE_MAX_BYTES): when an entry would take it over the cap, the least
recently used entries (modification time, refreshed lazily at most once a minute per hit)
go until it is under 90 % of the cap. Every worker process of a node shares the directory;
an entry is written to a temp name and renamed, so a reader sees a whole entry or none.
It only holds copies: losing it (a crash, another node) changes no answer.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

TOUCH_EVERY = 60.0  # seconds: the access time is refreshed lazily (one utime per minute)
LOW_WATERMARK = 0.9


class HotCache:
    """Files named by the digest of what they hold, under ``root``, at most ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self._prefix = str(root) + "/"  # str + str: cheaper than Path / str on the hot path
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._bytes = self._scan_total()

    @staticmethod
    def name(*parts: str) -> str:
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]

    def path(self, name: str) -> Path:
        return self.root / name

    def read(self, name: str) -> bytes | None:
        """The entry's bytes if present (a frame): one open, one read."""
        path = self._prefix + name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if time.time() - st.st_mtime > TOUCH_EVERY:
                os.utime(fd)
            return os.pread(fd, st.st_size, 0)
        finally:
            os.close(fd)

    def get(self, name: str) -> Path | None:
        """The entry's file if present (and mark it used)."""
        p = self.root / name
        try:
            st = os.stat(self._prefix + name)
        except FileNotFoundError:
            return None
        now = time.time()
        if now - st.st_mtime > TOUCH_EVERY:
            try:
                os.utime(p, (now, now))
            except FileNotFoundError:
                return None
        return p

    def put(self, name: str, chunks: Iterable[bytes | memoryview]) -> Path:
        """Write an entry from ``chunks`` (streamed, never whole in memory) and return it."""
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    size += len(chunk)
            os.replace(tmp, self.root / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._account(size)
        return self.root / name

    def _account(self, size: int) -> None:
        with self._lock:
            self._bytes += size
            if self._bytes <= self.max_bytes:
                return
            self._bytes = self._evict(int(self.max_bytes * LOW_WATERMARK))

    def _entries(self) -> list[tuple[float, int, Path]]:
        found = []
        for p in self.root.iterdir():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            found.append((st.st_mtime, st.st_size, p))
        return found

    def _scan_total(self) -> int:
        return sum(size for _m, size, _p in self._entries())

    def _evict(self, target: int) -> int:
        """Remove the oldest entries until at most ``target`` bytes remain; the new total."""
        entries = sorted(self._entries())
        total = sum(size for _m, size, _p in entries)
        for _mtime, size, p in entries:
            if total <= target:
                break
            p.unlink(missing_ok=True)
            total -= size
        return total

    @property
    def bytes(self) -> int:
        return self._bytes
