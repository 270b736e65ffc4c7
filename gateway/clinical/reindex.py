"""Rebuild the search rows when what is indexed changes (a new parameter, a new element path).

Re-importing an unchanged sheet keeps its resources as they are (repository.replace_patients),
so new index definitions would never reach rows stored before them and a search on a new
parameter would silently miss them. The definitions' signature is kept in ``fhir_meta``; a
process that finds another one rebuilds every resource's rows from its stored body, in one
transaction that starts by claiming the new signature (a conditional UPDATE, or the INSERT of
the first row): a second process started at the same moment waits on that row, then sees
the work done and skips it.
"""
from __future__ import annotations

import hashlib
import json
import logging

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from . import params as S
from .extract import index_rows, text_rows
from .schema import index_t, meta_t, resources_t, text_t

log = logging.getLogger(__name__)

FORMAT = 2  # bump when extract.py indexes the same parameter differently
KEY = "index-signature"
BATCH = 500


def signature() -> str:
    """A digest of every indexed definition in the parameter table."""
    items = [[FORMAT]] + [[kind, p.name, p.type, list(p.paths), p.url, list(p.targets)]
                          for kind, params in sorted(S.PARAMS.items())
                          for p in params.values()]
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:40]


def ensure_current(engine: Engine) -> bool:
    """Rebuild the rows if they were made under other definitions; True when it did."""
    wanted = signature()
    with engine.connect() as conn:
        found = conn.execute(select(meta_t.c.value).where(meta_t.c.key == KEY)).scalar()
    if found == wanted:
        return False
    try:
        with engine.begin() as conn:
            if found is None:
                conn.execute(meta_t.insert().values(key=KEY, value=wanted))
            elif not conn.execute(update(meta_t).where(meta_t.c.key == KEY, meta_t.c.value == found)
                                  .values(value=wanted)).rowcount:
                return False  # another process claimed it first and has committed its rebuild
            count = _rebuild(conn)
    except IntegrityError:  # another process inserted the first row: it rebuilds
        return False
    if count:
        log.info("FHIR search index rebuilt for %d resources (new index definitions)", count)
    return bool(count)


def _rebuild(conn: Connection) -> int:
    conn.execute(delete(index_t))
    conn.execute(delete(text_t))
    last, count = 0, 0
    while True:
        rows = conn.execute(select(resources_t.c.pk, resources_t.c.body)
                            .where(resources_t.c.pk > last).order_by(resources_t.c.pk)
                            .limit(BATCH)).fetchall()
        if not rows:
            return count
        for pk, body in rows:
            write_index(conn, pk, orjson.loads(body))
        last, count = rows[-1][0], count + len(rows)


_EMPTY_ROW = {"system": None, "value": None, "num": None, "lo": None, "hi": None}


def write_index(conn: Connection, pk: int, resource: dict) -> None:
    """Insert the index and text rows of the stored resource ``pk``."""
    rows = [{**_EMPTY_ROW, "res_pk": pk, **row} for row in index_rows(resource)]
    if rows:
        conn.execute(index_t.insert(), rows)
    texts = [{"res_pk": pk, **row} for row in text_rows(resource)]
    if texts:
        conn.execute(text_t.insert(), texts)
