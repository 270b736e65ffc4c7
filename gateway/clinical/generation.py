"""Finished search results, kept per worker until an import changes the stored resources.

Measured under gunicorn (gthread, 2 cores), the pooled connection and the SQL statement are most
of what a small FHIR search costs, so a repeated search (a viewer's patient panel, a poll) is
answered from memory. Imports may run in another process (``tcia-gateway import``), so the
change signal is a small token file next to the SQLite index (``<db>-fhir-generation``):
writers put a fresh random token there before and after each commit that changes resources
(``Repository.replace_patients``); readers keep the file memory-mapped, so checking it is a
memory read, no system call. A result is stored with the token read *before* its query ran,
so a result that raced a commit is never served after the commit's token is visible.

Only for a SQLite file database: a server database (PostgreSQL) may be written from other
hosts, and there is no result cache.
"""
from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from collections.abc import Hashable
from pathlib import Path

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

SUFFIX = "-fhir-generation"
TOKEN_SIZE = 16
RECHECK_S = 1.0                 # how often a reader checks that its mapped file is still the file
MAX_BYTES = 16 * 1024 * 1024    # per worker
MAX_ENTRIES = 2048
MAX_ENTRY_BYTES = 512 * 1024    # a bigger result (a large _count) is rebuilt each time


class Generation:
    """The change token of one SQLite database's FHIR resources."""

    def __init__(self, path: Path, mode: int = 0o644) -> None:
        self.path = path
        self.mode = mode
        self._map: mmap.mmap | None = None
        self._inode: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._warned = False

    @classmethod
    def of(cls, engine: Engine) -> Generation | None:
        """The token file of a SQLite file database; None for any other database."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:" \
                or database.startswith("file:"):
            return None
        db = Path(database).resolve()
        mode = db.stat().st_mode & 0o666 if db.exists() else 0o644  # as SQLite does for -wal/-shm
        return cls(db.with_name(db.name + SUFFIX), mode)

    def token(self) -> bytes | None:
        """The current token, or None when the file cannot be mapped (no caching then)."""
        now = time.monotonic()
        if now - self._checked > RECHECK_S:
            self._checked = now
            self._remap_if_replaced()
        mapped = self._map
        return mapped[:TOKEN_SIZE] if mapped is not None else None

    def bump(self) -> None:
        """Write a fresh token (raises OSError: a writer must not leave readers stale)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.mode)
        try:
            os.pwrite(fd, os.urandom(TOKEN_SIZE), 0)
        finally:
            os.close(fd)

    def _remap_if_replaced(self) -> None:
        try:
            st = os.stat(self.path)
            if self._map is not None and (st.st_dev, st.st_ino) == self._inode:
                return
        except FileNotFoundError:
            pass
        try:
            self._map, self._inode = self._open()
        except OSError as exc:  # a read-only data dir without the file: search without a cache
            if not self._warned:
                log.warning("FHIR search results not cached: %s: %s", self.path, exc)
                self._warned = True
            self._map, self._inode = None, None

    def _open(self) -> tuple[mmap.mmap, tuple[int, int]]:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.mode)
        except OSError:  # read-only: an existing file still works
            fd = os.open(self.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if st.st_size < TOKEN_SIZE:  # new file: any token will do
                os.pwrite(fd, os.urandom(TOKEN_SIZE), 0)
            return mmap.mmap(fd, TOKEN_SIZE, access=mmap.ACCESS_READ), (st.st_dev, st.st_ino)
        finally:
            os.close(fd)


class ResultCache:
    """Finished results by key (a search plan), each with the token it was computed under."""

    def __init__(self, generation: Generation | None, *, max_bytes: int = MAX_BYTES,
                 max_entries: int = MAX_ENTRIES, max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.generation = generation
        self.max_bytes, self.max_entries, self.max_entry_bytes = max_bytes, max_entries, max_entry_bytes
        self._entries: dict[Hashable, tuple[bytes, bytes]] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # writers only: a lookup is one atomic dict.get

    def token(self) -> bytes | None:
        """Read before computing a result that will be stored; None: do not cache."""
        return self.generation.token() if self.generation is not None else None

    def get(self, key: Hashable, token: bytes) -> bytes | None:
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] == token else None

    def put(self, key: Hashable, token: bytes, value: bytes) -> None:
        if len(value) > self.max_entry_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            while self._entries and (self._bytes + len(value) > self.max_bytes
                                     or len(self._entries) >= self.max_entries):
                self._bytes -= len(self._entries.pop(next(iter(self._entries)))[1])
            self._entries[key] = (token, value)
            self._bytes += len(value)
