"""What every node of one archive shares through the index database, beside the index:
where the files are (STORE_URL as first opened), so a node, a copy of the data dir or a
command started without STORE_URL never reads a bucket's keys as local paths.

Schema creation runs under a PostgreSQL advisory lock (:func:`schema_lock`): N nodes
starting at once on an empty database would otherwise race on CREATE TABLE.
"""
from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ...dbschema import create_all

SCHEMA_LOCK = 0x7C1A_5C4E  # pg_advisory_xact_lock key of schema creation (any constant)

shared = MetaData()
archive_meta = Table(
    "archive_meta", shared,
    Column("key", String(64), primary_key=True),
    Column("value", String(1024), nullable=False),
)


def schema_lock(conn: Connection) -> None:
    """Serialise schema creation among nodes (PostgreSQL; SQLite's own write lock is
    enough). Released at the end of the transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})


def recorded_store(engine: Engine) -> str:
    """The STORE_URL recorded when the archive was first opened ('' if none)."""
    create_all(engine, shared)
    with engine.connect() as conn:
        value = conn.execute(select(archive_meta.c.value).where(
            archive_meta.c.key == "store_url")).scalar()
    return value or ""


def record_store(engine: Engine, url: str) -> str:
    """Record ``url`` unless another is recorded; the recorded one."""
    try:
        with engine.begin() as conn:
            conn.execute(archive_meta.insert().values(key="store_url", value=url))
    except IntegrityError:
        pass  # recorded meanwhile (another node)
    return recorded_store(engine)
