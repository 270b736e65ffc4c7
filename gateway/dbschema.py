"""Tables created by several processes starting at once on one database.

``MetaData.create_all`` looks, then creates. Two gunicorn workers starting together on one
SQLite file both see no table, and the second CREATE fails with "table ... already exists"
(pysqlite runs DDL outside a transaction, so SQLite's write lock does not make the look and
the create one step); the worker would exit. The loser looks again: each look finds what the
winner made meanwhile. On PostgreSQL the callers also hold an advisory lock
(archive/local/shared.py), so the race is SQLite's.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

ATTEMPTS = 5  # each attempt finds at least one more of the winner's tables


def create_all(bind: Engine | Connection, metadata: MetaData,
               tables: Sequence[Table] | None = None) -> None:
    """``metadata.create_all(bind, tables)``, looking again when another process created a
    table between this one's look and its CREATE."""
    for attempt in range(ATTEMPTS):
        try:
            metadata.create_all(bind, tables=tables)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == ATTEMPTS - 1:
                raise
