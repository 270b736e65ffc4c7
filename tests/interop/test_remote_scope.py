"""A patient-scoped view of the PACS backend in front of a real Orthanc: C-FIND answers
narrowed to the scope's patients (with paging after narrowing), another patient's UID
answering like a UID the PACS does not hold, a C-STORE of another patient's instance refused
(0x0124) before anything reaches the PACS, and collection scopes refused as unsupported."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from gateway.archive import Archive, Level, NotFound, NotSupported, Query, StoreOutcome, UidPath
from gateway.archive.local import open_local
from gateway.archive.scope import Scope
from gateway.archive.status import Status
from gateway.backends.pacs.archive import RemoteArchive
from tests.support.dicomfiles import make_file, uid
from tests.support.orthanc import Orthanc, start_orthanc
from tests.support.remote import remote_settings

pytestmark = [pytest.mark.orthanc, pytest.mark.timeout(300)]
P1_ONLY = Scope(patients=frozenset({"P1"}))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Iterator[Orthanc]:
    src = tmp_path_factory.mktemp("scope-src")
    for pid, study, n in (("P1", "A", 2), ("P1", "B", 1), ("P2", "C", 2)):
        for i in range(n):
            make_file(src / f"{study}{i}.dcm", patient=pid, study=study, series=f"{study}1",
                      sop=f"{study}1-{i}", InstanceNumber=i + 1, AccessionNumber=f"ACC{study}")
    orthanc = start_orthanc(tmp_path_factory.mktemp("scope-pacs"), artifacts_dir / "logs")
    assert orthanc.load([src]) == 5
    yield orthanc
    orthanc.stop()


@pytest.fixture
def remote(tmp_path: Path, pacs: Orthanc) -> Iterator[RemoteArchive]:
    settings = remote_settings(tmp_path / "cache", pacs.address)
    archive = RemoteArchive(settings, cache=open_local(settings))
    yield archive
    archive.close()


def accessions(archive: Archive, **kw: int) -> list[str]:
    res = archive.search(Query(Level.STUDY, {"AccessionNumber": ""}, **kw))
    return sorted(m["00080050"]["Value"][0] for m in res.matches)


def test_cfind_narrowed_to_the_patient(remote: RemoteArchive) -> None:
    view = remote.scoped(P1_ONLY)
    assert accessions(remote) == ["ACCA", "ACCB", "ACCC"]
    assert accessions(view) == ["ACCA", "ACCB"]
    assert view.search(Query(Level.STUDY, {"PatientID": "P2"})).matches == []
    assert accessions(view, limit=1, offset=1) in (["ACCA"], ["ACCB"])
    two = remote.scoped(Scope(patients=frozenset({"P1", "P2"})))
    assert accessions(two) == ["ACCA", "ACCB", "ACCC"]
    series = view.search(Query(Level.SERIES, {"StudyInstanceUID": uid("study", "C")}))
    assert series.matches == []


def test_other_patients_uid_answers_like_unknown(remote: RemoteArchive) -> None:
    view = remote.scoped(P1_ONLY)
    pairs = [(UidPath(uid("study", "C")), UidPath(uid("study", "Z"))),
             (UidPath(uid("study", "C"), uid("series", "C1")),
              UidPath(uid("study", "Z"), uid("series", "Z1"))),
             (UidPath(uid("study", "C"), uid("series", "C1"), uid("sop", "C1-0")),
              UidPath(uid("study", "Z"), uid("series", "Z1"), uid("sop", "Z1-0")))]
    for hidden, unknown in pairs:
        with pytest.raises(NotFound) as h:
            view.metadata(hidden)
        with pytest.raises(NotFound) as u:
            view.metadata(unknown)
        mask = {hidden.study: "S", hidden.series: "SE", hidden.instance: "I",
                unknown.study: "S", unknown.series: "SE", unknown.instance: "I"}
        texts = [h.value.message, u.value.message]
        for k, v in mask.items():
            if k:
                texts = [t.replace(k, v) for t in texts]
        assert texts[0] == texts[1]
    ours = UidPath(uid("study", "A"), uid("series", "A1"))
    assert len(list(view.instances(ours))) == 2  # retrieved through the view
    assert view.metadata(ours) == remote.metadata(ours)


def test_store_of_another_patient_refused_before_the_pacs(remote: RemoteArchive,
                                                          pacs: Orthanc, tmp_path: Path) -> None:
    before = pacs.get("/statistics")["CountInstances"]
    other = make_file(tmp_path / "x.dcm", patient="P2", study="C", series="C1", sop="C1-7")
    result = remote.scoped(P1_ONLY).store(other)
    assert result.outcome is StoreOutcome.FAILED and result.reason is Status.NOT_AUTHORIZED
    assert pacs.get("/statistics")["CountInstances"] == before
    ours = make_file(tmp_path / "y.dcm", patient="P1", study="B", series="B1", sop="B1-7")
    assert remote.scoped(P1_ONLY).store(ours).outcome is StoreOutcome.STORED
    assert pacs.get("/statistics")["CountInstances"] == before + 1


def test_collections_refused_on_a_pacs(remote: RemoteArchive) -> None:
    for scope in (Scope(collections=frozenset({"COVID-19-AR"})),
                  Scope(hidden=frozenset({"X"}))):
        with pytest.raises(NotSupported, match="collections cannot be kept apart"):
            remote.scoped(scope)
