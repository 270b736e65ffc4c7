"""Scoped views of the embedded archive on SQLite and PostgreSQL: the index records each
study's collection (CTP ProjectName, ``import --collection``); ``LocalArchive.scoped`` narrows
every read inside its statement, so another patient's or collection's UID answers exactly
like an unknown UID, and refuses writes outside the scope (0x0124) storing nothing."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from gateway.archive import Archive, Level, NotFound, Query, StoreOutcome, UidPath
from gateway.archive.local import LocalArchive, open_local
from gateway.archive.local.index import Index
from gateway.archive.local.schema import studies
from gateway.archive.scope import Scope
from gateway.archive.status import Status
from gateway.config import Settings
from gateway.ingest.importer import run_import
from tests.support.dicomfiles import make_file, uid

AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"
# patient, collection, study, series, instances
LAYOUT = [("P1", AR, "A", "A1", 2), ("P1", AR, "B", "B1", 3), ("P2", RICORD, "C", "C1", 2),
          ("P3", None, "D", "D1", 1)]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    settings = Settings().replace(data_dir=tmp_path / "data")
    if request.param == "postgresql":
        name = "t" + uuid.uuid4().hex[:12]
        settings = settings.replace(
            database_url=request.getfixturevalue("postgres").create_database(name))
    return settings


@pytest.fixture
def archive(settings: Settings, tmp_path: Path) -> LocalArchive:
    src = tmp_path / "src"
    for pid, coll, study, ser, n in LAYOUT:
        for i in range(n):
            make_file(src / f"{ser}-{i}.dcm", patient=pid, study=study, series=ser,
                      sop=f"{ser}-{i}", InstanceNumber=i + 1, collection=coll,
                      AccessionNumber=f"ACC{study}")
    archive = open_local(settings)
    for f in sorted(src.iterdir()):
        assert archive.store(f).outcome is StoreOutcome.STORED
    return archive


def collections_of(archive: LocalArchive) -> dict[str, str | None]:
    with archive.index.engine.connect() as conn:
        return {r.accession_number: r.collection for r in conn.execute(
            select(studies.c.accession_number, studies.c.collection))}


def accessions(archive: Archive, level: Level = Level.STUDY, **kw: int) -> list[str]:
    res = archive.search(Query(level, {"AccessionNumber": ""} if level is Level.STUDY else {},
                               **kw))
    return [m["00080050"]["Value"][0] for m in res.matches]


def answer(view: Archive, op: str, where: UidPath) -> tuple[str, str]:
    try:
        got = getattr(view, op)(where)
        return "ok", repr(list(got) if op == "instances" else got)
    except NotFound as exc:
        return type(exc).__name__, exc.message


def test_collection_recorded_from_ctp_block(archive: LocalArchive) -> None:
    assert collections_of(archive) == {"ACCA": AR, "ACCB": AR, "ACCC": RICORD, "ACCD": None}
    assert archive.index.collection_counts() == {
        None: {"patients": 1, "studies": 1, "series": 1, "instances": 1},
        AR: {"patients": 1, "studies": 2, "series": 2, "instances": 5},
        RICORD: {"patients": 1, "studies": 1, "series": 1, "instances": 2}}


def test_import_collection_option(settings: Settings, tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "x.dcm", patient="P9", study="X", sop="X1",
              AccessionNumber="ACCX")
    make_file(tmp_path / "in" / "y.dcm", patient="P9", study="Y", sop="Y1", collection=AR,
              AccessionNumber="ACCY")
    archive = open_local(settings)
    report = run_import(archive, [tmp_path / "in"], progress=False, collection="MY-COHORT")
    assert report.new == 2
    assert collections_of(archive) == {"ACCX": "MY-COHORT", "ACCY": "MY-COHORT"}


@pytest.mark.parametrize("scope, studies_seen, patients_seen", [
    (Scope(collections=frozenset({AR})), ["ACCA", "ACCB"], ["P1"]),
    (Scope(collections=frozenset({RICORD, AR})), ["ACCA", "ACCB", "ACCC"], ["P1", "P2"]),
    (Scope(hidden=frozenset({AR})), ["ACCC", "ACCD"], ["P2", "P3"]),
    (Scope(patients=frozenset({"P2", "P3"})), ["ACCC", "ACCD"], ["P2", "P3"]),
    (Scope(patients=frozenset({"P1"}), collections=frozenset({RICORD})), [], []),
    (Scope(collections=frozenset()), [], []),
])
def test_search_narrowed_at_every_level(archive: LocalArchive, scope: Scope,
                                        studies_seen: list[str], patients_seen: list[str]) -> None:
    view = archive.scoped(scope)
    assert accessions(view) == studies_seen
    pats = view.search(Query(Level.PATIENT, {}))
    assert [m["00100020"]["Value"][0] for m in pats.matches] == patients_seen
    expected_series = [s for p, c, st, s, n in LAYOUT if f"ACC{st}" in studies_seen]
    series = view.search(Query(Level.SERIES, {"SeriesInstanceUID": ""}))
    assert sorted(m["0020000E"]["Value"][0] for m in series.matches) == sorted(
        uid("series", s) for s in expected_series)
    n = sum(n for p, c, st, s, n in LAYOUT if f"ACC{st}" in studies_seen)
    assert len(view.search(Query(Level.INSTANCE, {})).matches) == n
    assert view.counts() == {"patients": len(patients_seen), "studies": len(studies_seen),
                             "series": len(expected_series), "instances": n}


def test_paging_and_patient_counts_are_the_views(archive: LocalArchive, tmp_path: Path) -> None:
    # P1 with a study in another collection too: a view of one collection counts its own
    extra = make_file(tmp_path / "extra.dcm", patient="P1", study="E", series="E1",
                      sop="E1-0", collection=RICORD, AccessionNumber="ACCE")
    assert archive.store(extra).ok
    view = archive.scoped(Scope(collections=frozenset({AR})))
    assert accessions(view, limit=1) == ["ACCA"]
    page = view.search(Query(Level.STUDY, {"AccessionNumber": ""}, limit=1, offset=1))
    assert [m["00080050"]["Value"][0] for m in page.matches] == ["ACCB"] and not page.truncated
    first = view.search(Query(Level.STUDY, {}, limit=1))
    assert first.truncated
    (p1,) = view.search(Query(Level.PATIENT, {})).matches
    assert [p1[t]["Value"][0] for t in ("00201200", "00201202", "00201204")] == [2, 2, 5]
    (whole,) = archive.search(Query(Level.PATIENT, {"PatientID": "P1"})).matches
    assert [whole[t]["Value"][0] for t in ("00201200", "00201202", "00201204")] == [3, 3, 6]


def _paths(study: str, series: str, sop: str) -> list[UidPath]:
    return [UidPath(study), UidPath(study, series), UidPath(study, series, sop),
            UidPath(None, None, sop), UidPath(None, series)]


@pytest.mark.parametrize("scope", [Scope(collections=frozenset({AR})),
                                   Scope(patients=frozenset({"P1"})),
                                   Scope(hidden=frozenset({RICORD}))])
def test_hidden_uid_answers_like_unknown(archive: LocalArchive, scope: Scope) -> None:
    """P2's study C (RICORD) through the view vs UIDs that exist nowhere: the same answer,
    word for word once the UID itself is set aside."""
    view = archive.scoped(scope)
    hidden = _paths(uid("study", "C"), uid("series", "C1"), uid("sop", "C1-0"))
    unknown = _paths(uid("study", "Z"), uid("series", "Z1"), uid("sop", "Z1-0"))
    names = {uid("study", "C"): "STUDY", uid("series", "C1"): "SERIES",
             uid("sop", "C1-0"): "SOP", uid("study", "Z"): "STUDY", uid("series", "Z1"): "SERIES",
             uid("sop", "Z1-0"): "SOP"}

    def masked(text_: str) -> str:
        for u, name in names.items():
            text_ = text_.replace(u, name)
        return text_

    for h, u in zip(hidden, unknown, strict=True):
        for op in ("metadata", "instance", "instances"):
            if op == "instance" and not h.instance:
                continue
            got_h, got_u = answer(view, op, h), answer(view, op, u)
            assert got_h[0] == "NotFound" and masked(got_h[1]) == masked(got_u[1]), (op, h)
        # and through the unscoped archive the hidden one exists
        assert archive.metadata(h).startswith(b"[{")
    for level, key in ((Level.STUDY, "StudyInstanceUID"), (Level.SERIES, "SeriesInstanceUID"),
                       (Level.INSTANCE, "SOPInstanceUID")):
        for h in (uid("study", "C"), uid("series", "C1"), uid("sop", "C1-0")):
            assert view.search(Query(level, {key: h})).matches == []
    assert view.search(Query(Level.PATIENT, {"PatientID": "P2"})).matches == []


def test_visible_reads_are_the_archives(archive: LocalArchive) -> None:
    view = archive.scoped(Scope(collections=frozenset({AR})))
    where = UidPath(uid("study", "B"), uid("series", "B1"))
    assert view.metadata(where) == archive.metadata(where)
    assert [i.sop_uid for i in view.instances(UidPath(uid("study", "B")))] == [
        i.sop_uid for i in archive.instances(UidPath(uid("study", "B")))]
    one = view.instance(UidPath(None, None, uid("sop", "A1-1")))
    assert one.path.read_bytes() == archive.instance(UidPath(None, None, uid("sop", "A1-1"))).path.read_bytes()


def test_store_outside_scope_refused_and_nothing_stored(archive: LocalArchive,
                                                        tmp_path: Path) -> None:
    view = archive.scoped(Scope(collections=frozenset({AR})))
    before = archive.index.counts()
    files_before = sorted(archive.files.files.rglob("*.dcm"))
    foreign = make_file(tmp_path / "f1.dcm", patient="P7", study="F", sop="F-0", collection=RICORD)
    joins_foreign_study = make_file(tmp_path / "f2.dcm", patient="P2", study="C", series="C1",
                                    sop="C1-9", collection=AR)
    replaces_foreign = make_file(tmp_path / "f3.dcm", patient="P1", study="A", series="A1",
                                 sop="C1-0", collection=AR)
    for f in (foreign, joins_foreign_study, replaces_foreign):
        result = view.store(f)
        assert result.outcome is StoreOutcome.FAILED
        assert result.reason is Status.NOT_AUTHORIZED and int(result.reason) == 0x0124
    assert archive.index.counts() == before
    assert sorted(archive.files.files.rglob("*.dcm")) == files_before
    assert not list(archive.files.tmp.glob("*"))
    patient_view = archive.scoped(Scope(patients=frozenset({"P1"})))
    other = make_file(tmp_path / "f4.dcm", patient="P2", study="G", sop="G-0", collection=AR)
    assert patient_view.store_batch([other])[0].reason is Status.NOT_AUTHORIZED
    assert archive.index.counts() == before


def test_store_inside_scope(archive: LocalArchive, tmp_path: Path) -> None:
    view = archive.scoped(Scope(collections=frozenset({AR})))
    marked = make_file(tmp_path / "s1.dcm", patient="P1", study="A", series="A1", sop="A1-7",
                       collection=AR)
    unmarked = make_file(tmp_path / "s2.dcm", patient="P5", study="H", sop="H-0",
                         AccessionNumber="ACCH")
    assert [r.outcome for r in view.store_batch([marked, unmarked])] == [StoreOutcome.STORED] * 2
    assert collections_of(archive)["ACCH"] == AR  # a one-collection root names it
    assert "ACCH" in accessions(view)


def test_existing_index_upgraded_with_collections(archive: LocalArchive,
                                                  settings: Settings) -> None:
    """An index made before collections: the column is added and filled from the CTP
    ProjectName kept in each study's stored metadata."""
    with archive.index.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_studies_collection"))
        conn.execute(text("ALTER TABLE studies DROP COLUMN collection"))
    archive.close()
    index = Index(settings.index_url)
    with index.engine.connect() as conn:
        got = dict(conn.execute(select(studies.c.accession_number, studies.c.collection)).all())
    assert got == {"ACCA": AR, "ACCB": AR, "ACCC": RICORD, "ACCD": None}
    again = open_local(settings)
    assert accessions(again.scoped(Scope(collections=frozenset({RICORD})))) == ["ACCC"]
