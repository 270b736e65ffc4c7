"""includefield of attributes the index lacks: each match's first instance (by SeriesNumber,
InstanceNumber, then storage order), read for a whole page in one statement
(``matching.first_documents``), the same documents the per-match lookup
(``one_by_one`` below, what the archive ran before) gives, at every level and in scoped views, on SQLite
and PostgreSQL."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, inspect, select, text

from gateway.archive import Level, Query, StoreOutcome
from gateway.archive.local import LocalArchive, matching, open_local
from gateway.archive.local.index import Index
from gateway.archive.local.schema import instances, series, studies
from gateway.archive.local.scoping import Shape, collection_condition, params as scope_params
from gateway.archive.scope import EVERYTHING, Scope
from gateway.config import Settings
from tests.support.dicomfiles import make_file, uid

AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"
# patient, collection, study, series, SeriesNumber, InstanceNumbers (stored in this order)
LAYOUT = [("P1", AR, "A", "A2", 2, [3, 1, 2]), ("P1", AR, "A", "A1", 1, [2, 1]),
          ("P1", RICORD, "B", "B1", 5, [1]), ("P2", RICORD, "C", "C1", 1, [1, 1]),
          ("P2", RICORD, "C", "C2", 1, [4]), ("P3", None, "D", "D1", 7, [9, 8])]
SCOPES = [EVERYTHING, Scope(collections=frozenset({RICORD})), Scope(hidden=frozenset({AR})),
          Scope(patients=frozenset({"P1"}), collections=frozenset({AR}))]


def one_by_one(conn: Connection, level: Level, pk: int,
               scope: Scope = EVERYTHING) -> bytes | None:
    """The first instance's metadata of one match, one statement per match (the oracle)."""
    stmt = select(instances.c.metadata).select_from(
        instances.join(series, instances.c.series_pk == series.c.pk))
    if level is Level.INSTANCE:
        stmt = stmt.where(instances.c.pk == pk)
    elif level is Level.SERIES:
        stmt = stmt.where(series.c.pk == pk)
    elif level is Level.STUDY:
        stmt = stmt.where(series.c.study_pk == pk)
    else:  # a patient: the first instance of a study the scope sees
        stmt = stmt.join(studies, series.c.study_pk == studies.c.pk).where(
            studies.c.patient_pk == pk, *collection_condition(Shape.of(scope)))
    stmt = stmt.order_by(series.c.series_number, series.c.pk, instances.c.instance_number,
                         instances.c.pk).limit(1)
    return conn.execute(stmt, scope_params(scope)).scalar()


@pytest.fixture(params=["sqlite", "postgresql"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> LocalArchive:
    settings = Settings().replace(data_dir=tmp_path / "data")
    if request.param == "postgresql":
        name = "t" + uuid.uuid4().hex[:12]
        settings = settings.replace(
            database_url=request.getfixturevalue("postgres").create_database(name))
    src = tmp_path / "src"
    for pid, coll, study, ser, number, instances in LAYOUT:
        for i, n in enumerate(instances):
            make_file(src / f"{ser}-{i}.dcm", patient=pid, study=study, series=ser,
                      sop=f"{ser}-{i}", SeriesNumber=number, InstanceNumber=n,
                      collection=coll, AccessionNumber=f"ACC{study}")
    archive = open_local(settings)
    for f in sorted(src.iterdir()):
        assert archive.store(f).outcome is StoreOutcome.STORED
    return archive


@pytest.mark.parametrize("level", list(Level))
@pytest.mark.parametrize("scope", SCOPES, ids=["all", "ricord", "hidden-ar", "p1-ar"])
def test_page_lookup_equals_the_per_match_lookup(archive: LocalArchive, level: Level,
                                                 scope: Scope) -> None:
    table = matching.TABLES[level]
    with archive.index.engine.connect() as conn:
        pks = list(conn.execute(select(table.c.pk)).scalars())
        expected = {pk: doc for pk in pks
                    if (doc := one_by_one(conn, level, pk, scope))}
        got = matching.first_documents(conn, level, pks, scope)
    assert got == expected and expected
    if scope == EVERYTHING:
        assert set(got) == set(pks)  # every row here has stored instances


def test_first_instance_is_by_series_then_instance_number(archive: LocalArchive) -> None:
    res = archive.search(Query(Level.STUDY, {"AccessionNumber": "ACCA"},
                               includefields=frozenset({"SOPInstanceUID", "InstanceNumber"})))
    (match,) = res.matches
    assert match["00200013"]["Value"] == [1]  # series 1 (A1), its instance 1
    assert match["00080018"] == {"vr": "UI", "Value": [uid("sop", "A1-1")]}


def test_page_includefields_take_two_statements(archive: LocalArchive) -> None:
    """The search and one lookup for the page, however many matches (OHIF's study list
    asks for Modality, a series attribute, on 101 studies)."""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(archive.index.engine, "before_cursor_execute", count)
    try:
        res = archive.search(Query(Level.STUDY, limit=101,
                                   includefields=frozenset({"00081030", "00080060"})))
    finally:
        event.remove(archive.index.engine, "before_cursor_execute", count)
    assert len(res.matches) == 4 and len(statements) == 2
    assert all("Value" in m["00080060"] for m in res.matches)


def test_index_made_before_the_modality_study_index_is_upgraded(archive: LocalArchive) -> None:
    """An index with the single-column ``ix_series_modality`` gets ``(modality, study_pk)``
    in its place at open, and ModalitiesInStudy answers as before."""
    engine = archive.index.engine
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_series_modality_study"))
        conn.execute(text("CREATE INDEX ix_series_modality ON series (modality)"))
    url = archive.index.url
    archive.close()
    index = Index(url)
    names = {ix["name"]: ix["column_names"] for ix in inspect(index.engine).get_indexes("series")}
    assert names.get("ix_series_modality_study") == ["modality", "study_pk"]
    assert "ix_series_modality" not in names
    Index(url)  # again: nothing left to do
    with index.engine.connect() as conn:
        res = matching.run(conn, Query(Level.STUDY, {"ModalitiesInStudy": "CT"}))
    accessions = sorted(m["00080050"]["Value"][0] for m in res.matches)
    assert accessions == ["ACCA", "ACCB", "ACCC", "ACCD"]  # make_file writes CT
