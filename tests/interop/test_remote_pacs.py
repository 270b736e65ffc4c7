"""The gateway in front of a real Orthanc holding the synthetic cohort (GATEWAY_PACS):
QIDO answers are Orthanc's own C-FIND answers, WADO returns the bytes Orthanc stores,
the pull-through cache serves a series a second time without any association, shares
one retrieval between concurrent requests and serves the first instances of a series
while the rest still arrives. Failures are in test_remote_pacs_failures.py."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import orjson
import pydicom
import pytest
import requests
from pydicom.dataset import Dataset
from pynetdicom import AE

from gateway.archive import Level, Query, UidPath
from gateway.archive.local import open_local
from gateway.archive.attributes import DEFAULT_RETURN
from gateway.backends.pacs.archive import RemoteArchive
from gateway.dimse import contexts as cx
from gateway.dimse.identifiers import QUERY_ONLY_TAGS
from tests.support.orthanc import Orthanc, dataset_bytes, start_orthanc
from tests.support.procs import GatewayServer, free_port, start_gateway
from tests.support.remote import cache_consistent, multipart_parts, remote_settings

pytestmark = [pytest.mark.orthanc, pytest.mark.timeout(300)]
AET = "TCIAGW"
RETRIEVE_URL = "00081190"
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@pytest.fixture(scope="module")
def move_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, small_cohort, artifacts_dir: Path, move_port: int) -> Iterator[Orthanc]:
    """Orthanc with the cohort, knowing our AE as a C-MOVE destination."""
    orthanc = start_orthanc(tmp_path_factory.mktemp("pacs"), artifacts_dir / "logs",
                            modalities={AET: (AET, "127.0.0.1", move_port)})
    assert orthanc.load([Path(small_cohort.root)]) == small_cohort.instances
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, pacs: Orthanc, artifacts_dir: Path) -> Iterator[GatewayServer]:
    server = start_gateway(tmp_path_factory.mktemp("gw"), artifacts_dir / "logs",
                           env={"GATEWAY_PACS": pacs.address, "GATEWAY_AE_TITLE": AET})
    yield server
    server.stop()


@pytest.fixture
def remote(tmp_path: Path, pacs: Orthanc) -> Iterator[RemoteArchive]:
    settings = remote_settings(tmp_path / "cache", pacs.address)
    archive = RemoteArchive(settings, cache=open_local(settings))
    yield archive
    archive.close()


def orthanc_cfind(pacs: Orthanc, level: str, **keys: str) -> dict[str, dict]:
    """Orthanc's own C-FIND answer (pynetdicom, no gateway code), keyed by the level's UID."""
    ours = {"STUDY": Level.STUDY, "SERIES": Level.SERIES, "IMAGE": Level.INSTANCE}[level]
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in DEFAULT_RETURN[ours]:
        if keyword != "TransferSyntaxUID":
            setattr(ds, keyword, keys.get(keyword))  # None: a zero-length return key
    ae = AE(ae_title=AET)
    ae.add_requested_context(cx.FIND_MODELS["S"])
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.aet)
    answers = [i for s, i in assoc.send_c_find(ds, cx.FIND_MODELS["S"]) if s.Status == 0xFF00]
    assoc.release()
    key = {"STUDY": "0020000D", "SERIES": "0020000E", "IMAGE": "00080018"}[level]
    out = {}
    for answer in answers:
        doc = answer.to_json_dict()
        for tag in QUERY_ONLY_TAGS:
            doc.pop(f"{tag:08X}", None)
        out[doc[key]["Value"][0]] = doc
    return out


def assert_same_answers(qido: list[dict], cfind: dict[str, dict], key: str) -> None:
    got = {m[key]["Value"][0]: m for m in qido}
    assert got.keys() == cfind.keys()
    for uid, theirs in cfind.items():
        ours = {t: v for t, v in got[uid].items() if t != RETRIEVE_URL}
        assert ours == theirs, uid  # same values, nothing left out, nothing invented


def test_qido_answers_are_orthancs_cfind_answers(gateway: GatewayServer, pacs: Orthanc) -> None:
    base = gateway.url + "/dicomweb"
    studies = requests.get(base + "/studies", timeout=60).json()
    assert_same_answers(studies, orthanc_cfind(pacs, "STUDY"), "0020000D")
    for study in [s["0020000D"]["Value"][0] for s in studies]:
        series = requests.get(f"{base}/studies/{study}/series", timeout=60).json()
        assert_same_answers(series, orthanc_cfind(pacs, "SERIES", StudyInstanceUID=study),
                            "0020000E")
        for uid in [s["0020000E"]["Value"][0] for s in series]:
            instances = requests.get(f"{base}/studies/{study}/series/{uid}/instances",
                                     timeout=60).json()
            assert_same_answers(instances, orthanc_cfind(
                pacs, "IMAGE", StudyInstanceUID=study, SeriesInstanceUID=uid), "00080018")


def test_wado_returns_the_bytes_orthanc_stores(gateway: GatewayServer, pacs: Orthanc,
                                               small_cohort) -> None:
    files = sorted(Path(small_cohort.root).rglob("*.dcm"))
    by_syntax = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID): p
                 for p in files}
    assert len(by_syntax) >= 2, "uncompressed and compressed instances"
    for path in by_syntax.values():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        url = (f"{gateway.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/"
               f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}")
        response = requests.get(url, headers={"Accept": DICOM_ANY}, timeout=60)
        assert response.status_code == 200, response.text
        [part] = multipart_parts(response)
        assert dataset_bytes(part) == dataset_bytes(pacs.instance_file(ds.SOPInstanceUID))


def _ct_series(remote: RemoteArchive) -> UidPath:
    ct = remote.search(Query(Level.SERIES, {"Modality": "CT"})).matches[0]
    return UidPath(ct["0020000D"]["Value"][0], ct["0020000E"]["Value"][0])


def test_second_metadata_request_makes_no_association(remote: RemoteArchive) -> None:
    series = _ct_series(remote)
    first = remote.metadata(series)
    used = (remote.scu.qr.checkouts, remote.scu.storage.checkouts, sum(remote.scu.stats.values()))
    second = remote.metadata(series)
    assert second == first
    assert len(orjson.loads(first)) > 1 and "7FE00010" in orjson.loads(first)[0]
    assert (remote.scu.qr.checkouts, remote.scu.storage.checkouts,
            sum(remote.scu.stats.values())) == used
    assert remote.scu.stats["C-GET"] == 1


def test_concurrent_requests_share_one_retrieval(remote: RemoteArchive) -> None:
    series = _ct_series(remote)
    gets_before = remote.scu.stats["C-GET"]
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(remote.metadata(series)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert remote.scu.stats["C-GET"] - gets_before == 1
    assert cache_consistent(remote.cache)


def test_retrieve_by_c_move(tmp_path: Path, pacs: Orthanc, move_port: int) -> None:
    settings = remote_settings(tmp_path / "cache", pacs.address, pacs_retrieve="c-move",
                               pacs_move_bind=f"127.0.0.1:{move_port}")
    archive = RemoteArchive(settings, cache=open_local(settings))
    try:
        series = _ct_series(archive)
        count = len(list(archive.instances(series)))
        assert count == len(orthanc_cfind(pacs, "IMAGE", StudyInstanceUID=series.study,
                                          SeriesInstanceUID=series.series))
        assert archive.scu.stats["C-MOVE"] == 1 and archive.scu.stats["C-GET"] == 0
    finally:
        archive.close()


def test_stow_goes_to_the_pacs_and_the_cache(gateway: GatewayServer, pacs: Orthanc,
                                              small_cohort, tmp_path: Path) -> None:
    ds = pydicom.dcmread(next(Path(small_cohort.root).rglob("*.dcm")))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "new.dcm"
    ds.save_as(path, enforce_file_format=True)
    boundary = "gatewaytestboundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    response = requests.post(f"{gateway.url}/dicomweb/studies", data=body, timeout=60, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    assert response.status_code == 200, response.text
    assert dataset_bytes(pacs.instance_file(ds.SOPInstanceUID))[:64] == dataset_bytes(
        path.read_bytes())[:64]
    url = (f"{gateway.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/metadata")
    assert requests.get(url, timeout=60).json()[0]["00080018"]["Value"] == [ds.SOPInstanceUID]


def test_fhir_imagingstudy_from_the_pacs_sorts_but_refuses_joins(gateway: GatewayServer,
                                                                  small_cohort) -> None:
    """C-FIND cannot join clinical data: chains and _has on ImagingStudy are a 400 naming the
    parameter (never a silently empty or unfiltered answer); _sort still works; the
    CapabilityStatement offers neither on ImagingStudy."""
    base = f"{gateway.url}/fhir"
    for key in ("patient.gender", "_has:Observation:derived-from:code", "subject:Patient.deceased"):
        response = requests.get(f"{base}/ImagingStudy", params={key: "x"}, timeout=60)
        assert response.status_code == 400
        issue = response.json()["issue"][0]
        assert issue["details"]["text"] == f"parameter: {key}" and "remote PACS" in issue["diagnostics"]
    bundle = requests.get(f"{base}/ImagingStudy", params={"_sort": "-started,_id", "_count": 500},
                          timeout=60).json()
    started = [(e["resource"]["started"], e["resource"]["id"]) for e in bundle["entry"]]
    assert bundle["total"] == small_cohort.studies == len(started)
    dates = [s for s, _ in started]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) > 1
    cap = requests.get(f"{base}/metadata", timeout=60).json()
    imaging = next(r for r in cap["rest"][0]["resource"] if r["type"] == "ImagingStudy")
    names = {p["name"]: p for p in imaging["searchParam"]}
    assert "_has" not in names and "chains" not in names["patient"].get("documentation", "")
    assert "_has" in {p["name"] for r in cap["rest"][0]["resource"] if r["type"] == "Patient"
                      for p in r["searchParam"]}
