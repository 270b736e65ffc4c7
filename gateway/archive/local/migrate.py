"""Bring an index created by an older version up to the current schema, in place.

``create_all`` makes missing tables but never alters one that exists, and the index has no
version table: each step here looks at the database itself (a column present or not) and
is idempotent, so any number of processes may run it at start.

Steps: ``studies.collection`` (the TCIA collection, added with collections): the column,
its index, and the value read back from each study's first stored instance (the CTP
ProjectName in its metadata), so an archive imported before keeps its collections.
``ix_series_modality_study`` (ModalitiesInStudy's EXISTS as covering seeks): made, the
single-column ``ix_series_modality`` it replaces dropped, and the table analysed so the
planner knows the new index at once.
"""
from __future__ import annotations

import logging

import orjson
from sqlalchemy import inspect, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from .ingest import ctp_project
from .schema import instances, series, studies

log = logging.getLogger(__name__)


def upgrade(engine: Engine) -> None:
    columns = {c["name"] for c in inspect(engine).get_columns("studies")}
    if "collection" not in columns:
        _add_collection(engine)
    _series_indexes(engine)


NEW_INDEX, OLD_INDEX = "ix_series_modality_study", "ix_series_modality"


def _series_indexes(engine: Engine) -> None:
    names = {ix["name"] for ix in inspect(engine).get_indexes("series")}
    if NEW_INDEX in names and OLD_INDEX not in names:
        return
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {NEW_INDEX} "
                              "ON series (modality, study_pk)"))
            conn.execute(text(f"DROP INDEX IF EXISTS {OLD_INDEX}"))
            conn.execute(text("ANALYZE series"))
    except SQLAlchemyError as exc:  # another process made it first
        if NEW_INDEX not in {ix["name"] for ix in inspect(engine).get_indexes("series")}:
            raise
        log.debug("%s made by another process: %s", NEW_INDEX, exc.__class__.__name__)
        return
    log.info("index upgraded: %s replaces %s", NEW_INDEX, OLD_INDEX)


def _add_collection(engine: Engine) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE studies ADD COLUMN collection VARCHAR(64)"))
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_studies_collection "
                              "ON studies (collection)"))
    except SQLAlchemyError as exc:  # another process added it first
        if "collection" not in {c["name"] for c in inspect(engine).get_columns("studies")}:
            raise
        log.debug("studies.collection added by another process: %s", exc.__class__.__name__)
        return
    first = (select(instances.c.metadata).select_from(
        instances.join(series, instances.c.series_pk == series.c.pk))
        .where(series.c.study_pk == studies.c.pk).limit(1).scalar_subquery())
    with engine.begin() as conn:
        found = {pk: ctp_project(orjson.loads(doc)) for pk, doc in
                 conn.execute(select(studies.c.pk, first)) if doc}
        for pk, name in found.items():
            if name:
                conn.execute(update(studies).where(studies.c.pk == pk).values(collection=name))
    log.info("index upgraded: studies.collection (%d of %d studies have one)",
             sum(1 for n in found.values() if n), len(found))
