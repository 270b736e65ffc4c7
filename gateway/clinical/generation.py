"""The change token of the stored FHIR resources, for caches of search results.

Imports may run in another process (``tcia-gateway import``), so the change signal is a small
token file next to the SQLite index (``<db>-fhir-generation``): writers put a fresh random
token there before and after each commit that changes resources
(``Repository.replace_patients``); readers keep the file memory-mapped, so checking it is a
memory read, no system call (``gateway.fhir.results`` keeps results under the token read
before their query ran).

On a server database (PostgreSQL), written from many nodes, the token is a counter row in
the database itself (:class:`DbGeneration`): a writer bumps it before and after its commit,
a reader reads it with one primary-key SELECT before its search, so a result cached on one
node is dropped the moment another node's change is committed.
"""
from __future__ import annotations

import logging
import mmap
import os
import time
from pathlib import Path

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..dbschema import create_all
from ..archive.local.shared import schema_lock

log = logging.getLogger(__name__)

SUFFIX = "-fhir-generation"
TOKEN_SIZE = 16
RECHECK_S = 1.0                 # how often a reader checks that its mapped file is still the file


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
        """The token file of a SQLite file database, the counter row of PostgreSQL; None for
        any other database."""
        if engine.dialect.name == "postgresql":
            return DbGeneration(engine)
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


_generation = Table("fhir_generation", MetaData(),
                    Column("id", Integer, primary_key=True),
                    Column("value", BigInteger, nullable=False))


class DbGeneration(Generation):
    """The change token as a counter row in the database: shared by every node."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(Path("/dev/null"))
        self.engine = engine
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        with self.engine.begin() as conn:  # nodes starting at once take turns
            schema_lock(conn)
            create_all(conn, _generation.metadata)
            if conn.execute(select(_generation.c.value).where(_generation.c.id == 1)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(_generation.insert().values(id=1, value=0))
                except IntegrityError:
                    pass  # another node made it
        self._ready = True

    def token(self) -> bytes | None:
        """The counter now (None if the database does not answer: no caching)."""
        try:
            self._ensure()
            with self.engine.connect() as conn:
                value = conn.execute(select(_generation.c.value).where(
                    _generation.c.id == 1)).scalar()
        except SQLAlchemyError:
            return None
        return None if value is None else int(value).to_bytes(8, "big", signed=True)

    def bump(self) -> None:
        """Count one change (its own transaction: visible to every node at once)."""
        self._ensure()
        with self.engine.begin() as conn:
            conn.execute(update(_generation).where(_generation.c.id == 1)
                         .values(value=_generation.c.value + 1))
