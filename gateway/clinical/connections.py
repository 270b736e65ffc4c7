"""Driver connections for the search hot path.

On SQLite a search borrows a connection kept here, outside SQLAlchemy's pool: borrowing is a
list pop (atomic under the GIL) where a pool checkout (events, record bookkeeping, reset on
return) costs ~5 µs hot and several times that in a loaded gunicorn worker. SQLite connections
do not go stale, so there is nothing to ping; they are made by the engine (its connect event
sets the pragmas, SQLAlchemy turns the same-thread check off) and then detached from its pool.
A server database keeps the engine's pool (pre-ping, invalidation on disconnect).
"""
from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy.engine import Engine

KEEP = 8  # idle connections kept per worker (gunicorn threads: 4)


class SqliteConnections:
    """A free list of detached sqlite3 connections of one engine."""

    def __init__(self, engine: Engine, keep: int = KEEP) -> None:
        self.engine = engine
        self.keep = keep
        self._free: list[Any] = []

    @classmethod
    def of(cls, engine: Engine) -> SqliteConnections | None:
        return cls(engine) if engine.dialect.name == "sqlite" else None

    def take(self) -> Any:
        try:
            return self._free.pop()
        except IndexError:
            fairy = self.engine.raw_connection()
            conn = fairy.dbapi_connection
            fairy.detach()  # ours now: closed by us, not returned to the pool
            return conn

    def give(self, conn: Any) -> None:
        if conn.in_transaction:  # as the pool's reset on return would
            conn.rollback()
        if len(self._free) < self.keep:
            self._free.append(conn)
        else:
            conn.close()

    @staticmethod
    def drop(conn: Any) -> None:
        """After an error: not reused."""
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            conn.close()
