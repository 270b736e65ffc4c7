"""The gateway's Q/R SCP (`tcia-gateway dimse`, a real process) driven by DCMTK's
echoscu, findscu, getscu, movescu (to a storescp run here) and storescu, and by a
real Orthanc querying and retrieving through its REST API. Counts and values are
checked against the synthetic cohort's files."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pydicom
import pytest

from gateway.config import Settings
from tests.support import dcmtk
from tests.support.orthanc import Orthanc, start_orthanc
from tests.support.procs import free_port
from tests.support.remote import start_scp

pytestmark = [pytest.mark.orthanc, pytest.mark.timeout(300)]
AET = "TCIAGW"


@dataclass(frozen=True)
class Truth:
    """What the cohort's files say: the expected answers."""

    patients: dict[str, set[str]]        # PatientID → studies
    studies: dict[str, dict[str, int]]   # study → series → instances
    modalities: dict[str, set[str]]      # study → modalities
    sops: dict[str, set[str]]            # study → SOPInstanceUIDs

    @property
    def ct_study(self) -> str:
        return next(s for s, m in self.modalities.items() if "CT" in m)


@pytest.fixture(scope="module")
def truth(small_cohort) -> Truth:
    patients: dict[str, set[str]] = {}
    studies: dict[str, Counter] = {}
    modalities: dict[str, set[str]] = {}
    sops: dict[str, set[str]] = {}
    for path in Path(small_cohort.root).rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        patients.setdefault(ds.PatientID, set()).add(ds.StudyInstanceUID)
        studies.setdefault(ds.StudyInstanceUID, Counter())[ds.SeriesInstanceUID] += 1
        modalities.setdefault(ds.StudyInstanceUID, set()).add(ds.Modality)
        sops.setdefault(ds.StudyInstanceUID, set()).add(ds.SOPInstanceUID)
    return Truth(patients, {k: dict(v) for k, v in studies.items()}, modalities, sops)


def _values(ds: pydicom.Dataset, keyword: str) -> set[str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return set()
    return {str(value)} if isinstance(value, str) else {str(v) for v in value}


@pytest.fixture(scope="module")
def peers(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[dict]:
    """Our SCP on the loaded archive, a DCMTK storescp and an Orthanc as move destinations."""
    root = tmp_path_factory.mktemp("scp-peers")
    logs = artifacts_dir / "logs"
    scp_port, store_port = free_port(), free_port()
    orthanc = start_orthanc(root / "orthanc", logs, aet="ORTHANC",
                            modalities={AET: (AET, "127.0.0.1", scp_port)})
    storescp = dcmtk.start_storescp(store_port, root / "received", logs / f"storescp-{store_port}.log")
    known = f"STORESCP@127.0.0.1:{store_port},ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    scp = start_scp(loaded_data_dir, logs, known_aes=known, port=scp_port)
    yield {"scp": scp, "orthanc": orthanc, "received": root / "received", "root": root}
    scp.proc.stop()
    storescp.stop()
    orthanc.stop()


def test_echoscu(peers) -> None:
    assert dcmtk.echoscu(AET, peers["scp"].port).returncode == 0


def test_findscu_patient_root_every_level(peers, truth: Truth, tmp_path: Path) -> None:
    port = peers["scp"].port
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "PATIENT", "PatientID": "",
                                      "NumberOfPatientRelatedStudies": ""}, tmp_path, root="P")
    assert found.final_status == "Success"
    assert {ds.PatientID: int(ds.NumberOfPatientRelatedStudies) for ds in found.responses} == {
        p: len(s) for p, s in truth.patients.items()}
    patient, studies = next(iter(truth.patients.items()))
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "STUDY", "PatientID": patient,
                                      "StudyInstanceUID": ""}, tmp_path, root="P")
    assert {ds.StudyInstanceUID for ds in found.responses} == studies
    study = sorted(studies)[0]
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "SERIES", "PatientID": patient,
                                      "StudyInstanceUID": study, "SeriesInstanceUID": ""},
                          tmp_path, root="P")
    assert {ds.SeriesInstanceUID for ds in found.responses} == set(truth.studies[study])
    series = sorted(truth.studies[study])[0]
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "IMAGE", "PatientID": patient,
                                      "StudyInstanceUID": study, "SeriesInstanceUID": series,
                                      "SOPInstanceUID": ""}, tmp_path, root="P")
    assert len(found.responses) == truth.studies[study][series]


def test_findscu_study_root_every_level(peers, truth: Truth, tmp_path: Path) -> None:
    port = peers["scp"].port
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "",
                                      "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": "",
                                      "PatientID": "COVID-19-AR-*"}, tmp_path)
    assert found.final_status == "Success"
    assert {ds.StudyInstanceUID: (_values(ds, "ModalitiesInStudy"),
                                  int(ds.NumberOfStudyRelatedInstances))
            for ds in found.responses} == {
        s: (truth.modalities[s], sum(truth.studies[s].values())) for s in truth.studies}
    study = truth.ct_study
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study,
                                      "SeriesInstanceUID": "", "Modality": "",
                                      "NumberOfSeriesRelatedInstances": ""}, tmp_path)
    assert {ds.SeriesInstanceUID: int(ds.NumberOfSeriesRelatedInstances)
            for ds in found.responses} == truth.studies[study]
    series = next(iter(truth.studies[study]))
    found = dcmtk.findscu(AET, port, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study,
                                      "SeriesInstanceUID": series, "SOPInstanceUID": "",
                                      "InstanceNumber": ""}, tmp_path)
    assert {ds.SOPInstanceUID for ds in found.responses} == truth.sops[study]


def test_findscu_modality_and_date_range(peers, truth: Truth, tmp_path: Path) -> None:
    found = dcmtk.findscu(AET, peers["scp"].port, {
        "QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "ModalitiesInStudy": "CT",
        "StudyDate": "19000101-29991231"}, tmp_path)
    assert {ds.StudyInstanceUID for ds in found.responses} == {
        s for s, m in truth.modalities.items() if "CT" in m}


@pytest.mark.parametrize("keys", [
    {"QueryRetrieveLevel": "BOGUS", "StudyInstanceUID": ""},
    {"QueryRetrieveLevel": "STUDY", "StudyDate": "2020-13"},
    {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2.x"},
])
def test_findscu_malformed_identifier_fails_clearly(peers, keys: dict, tmp_path: Path) -> None:
    found = dcmtk.findscu(AET, peers["scp"].port, keys, tmp_path)
    assert found.responses == []
    assert found.final_status.startswith("Error: DataSetDoesNotMatchSOPClass")
    assert dcmtk.echoscu(AET, peers["scp"].port).returncode == 0  # still serving


def test_getscu_whole_study(peers, truth: Truth, tmp_path: Path) -> None:
    study = truth.ct_study
    dcmtk.getscu(AET, peers["scp"].port, {"QueryRetrieveLevel": "STUDY",
                                          "StudyInstanceUID": study}, tmp_path)
    got = [pydicom.dcmread(p) for p in tmp_path.iterdir()]
    assert {ds.SOPInstanceUID for ds in got} == truth.sops[study]
    assert all(ds.StudyInstanceUID == study and ds.pixel_array.size for ds in got)


def test_getscu_of_compressed_study_decompresses_for_a_plain_peer(peers, small_cohort,
                                                                  tmp_path: Path) -> None:
    """getscu proposes uncompressed syntaxes only: compressed instances arrive decoded."""
    compressed = [p for p in Path(small_cohort.root).rglob("*.dcm") if pydicom.dcmread(
        p, stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed]
    assert compressed, "the cohort has compressed radiographs"
    original = pydicom.dcmread(compressed[0])
    dcmtk.getscu(AET, peers["scp"].port, {"QueryRetrieveLevel": "STUDY",
                                          "StudyInstanceUID": original.StudyInstanceUID}, tmp_path)
    got = pydicom.dcmread(next(tmp_path.iterdir()))
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    assert (got.pixel_array == original.pixel_array).all()  # lossless syntaxes only


def test_movescu_whole_study_to_storescp(peers, truth: Truth) -> None:
    study = truth.ct_study
    proc = dcmtk.movescu(AET, peers["scp"].port, {"QueryRetrieveLevel": "STUDY",
                                                  "StudyInstanceUID": study}, "STORESCP")
    assert proc.returncode == 0
    received = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                for p in peers["received"].iterdir() if p.is_file()}
    assert truth.sops[study] <= received


def test_movescu_to_unknown_destination_is_refused(peers, truth: Truth) -> None:
    proc = dcmtk.movescu(AET, peers["scp"].port, {"QueryRetrieveLevel": "STUDY",
                                                  "StudyInstanceUID": truth.ct_study},
                         "NOBODY", check=False)
    assert proc.returncode != 0
    assert "MoveDestinationUnknown" in proc.stdout + proc.stderr


def test_storescu_folder_into_an_empty_archive(small_cohort, truth: Truth, tmp_path: Path,
                                               artifacts_dir: Path) -> None:
    scp = start_scp(tmp_path / "data", artifacts_dir / "logs")
    try:
        dcmtk.storescu(AET, scp.port, [Path(small_cohort.root)])
        dcmtk.storescu(AET, scp.port, [Path(small_cohort.root)])  # again: identical → success
    finally:
        scp.proc.stop()
    from gateway.archive.local import open_local
    counts = open_local(Settings().replace(data_dir=tmp_path / "data")).index.counts()
    assert counts == {"patients": len(truth.patients), "studies": len(truth.studies),
                      "series": sum(len(s) for s in truth.studies.values()),
                      "instances": sum(len(s) for s in truth.sops.values())}


def test_calling_ae_allow_list(loaded_data_dir: Path, artifacts_dir: Path) -> None:
    scp = start_scp(loaded_data_dir, artifacts_dir / "logs", allowed="FRIEND")
    try:
        assert dcmtk.echoscu(AET, scp.port, calling="FRIEND").returncode == 0
        refused = dcmtk.echoscu(AET, scp.port, calling="STRANGER", check=False)
        assert refused.returncode != 0 and "Calling AE Title Not Recognized" in (
            refused.stdout + refused.stderr)
    finally:
        scp.proc.stop()


def test_orthanc_queries_and_retrieves_from_our_scp(peers, truth: Truth) -> None:
    orthanc: Orthanc = peers["orthanc"]
    assert orthanc.post(f"/modalities/{AET}/echo", {}) == {}
    query = orthanc.post(f"/modalities/{AET}/query", {
        "Level": "Study", "Query": {"PatientID": "COVID-19-AR-*", "StudyInstanceUID": ""}})
    answers = orthanc.get(f"/queries/{query['ID']}/answers?expand")
    assert {a["0020,000d"]["Value"] for a in answers} == set(truth.studies)
    index = next(i for i, a in enumerate(answers) if a["0020,000d"]["Value"] == truth.ct_study)
    orthanc.post(f"/queries/{query['ID']}/answers/{index}/retrieve",
                 {"TargetAet": "ORTHANC", "Synchronous": True})
    stored = orthanc.post("/tools/find", {"Level": "Instance", "Expand": True,
                                          "Query": {"StudyInstanceUID": truth.ct_study}})
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in stored} == truth.sops[truth.ct_study]
