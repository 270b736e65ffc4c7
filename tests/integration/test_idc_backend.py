"""BACKEND=idc on a real S3 store: SeaweedFS holding synthetic twins in IDC's bucket layout
(``<series_uuid>/<instance_uuid>.dcm``) and a parquet index of ``idc_index``'s schema made
from the same files. Searches answer from the index with no bucket call; the first read of
a series lists its folder and GETs each object once, later reads make none; bytes are the
uploaded ones; a missing object is 502 and an unreachable bucket 503, nothing cached."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.support.idc import (IdcSeries, LiveApp, idc_settings, scan, serve, synth_twin, upload,
                               write_index)

COLLECTIONS = ("COVID-19-AR", "MIDRC-RICORD-1C")


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, IdcSeries]:
    root = tmp_path_factory.mktemp("idc-twins")
    found: dict[str, IdcSeries] = {}
    for name in COLLECTIONS:
        found.update(scan(synth_twin(root / name, name, patients=2), name))
    return found


@pytest.fixture(scope="module")
def bucket(s3_store, twins) -> str:
    name = s3_store.create_bucket("idc-open-data-local")
    assert upload(s3_store, name, list(twins.values())) == sum(
        len(s.objects) for s in twins.values())
    return name


@pytest.fixture(scope="module")
def index(tmp_path_factory, twins) -> Path:
    return write_index(list(twins.values()), tmp_path_factory.mktemp("idc-index") / "idx.parquet")


@pytest.fixture(scope="module")
def live(tmp_path_factory, s3_store, bucket, index) -> Iterator[LiveApp]:
    settings = idc_settings(s3_store, tmp_path_factory.mktemp("idc-data"), bucket, index,
                            idc_timeout=2.0)
    yield from serve(settings)


def _archive(live: LiveApp):
    return live.app.extensions["tcia_gateway"]["archive"]


def _calls(live: LiveApp) -> dict[str, int]:
    return dict(_archive(live).bucket.calls)


def _biggest(twins: dict[str, IdcSeries], modality: str | None = None) -> IdcSeries:
    pool = [s for s in twins.values() if modality in (None, s.row["Modality"])]
    return max(pool, key=lambda s: (len(s.objects), s.row["SeriesInstanceUID"]))


def test_searches_answer_from_the_index_with_no_bucket_call(live, twins) -> None:
    before = _calls(live)
    studies = requests.get(f"{live.url}/dicomweb/studies", timeout=30).json()
    want = {s.row["StudyInstanceUID"] for s in twins.values()}
    assert {s["0020000D"]["Value"][0] for s in studies} == want
    some = next(iter(twins.values())).row
    series = requests.get(f"{live.url}/dicomweb/studies/{some['StudyInstanceUID']}/series",
                          timeout=30).json()
    mine = {s["0020000E"]["Value"][0]: s for s in series}
    assert some["SeriesInstanceUID"] in mine
    row = mine[some["SeriesInstanceUID"]]
    assert row["00201209"]["Value"] == [some["instanceCount"]]  # NumberOfSeriesRelatedInstances
    by_collection = requests.get(f"{live.url}/collections/COVID-19-AR/dicomweb/studies",
                                 timeout=30).json()
    assert {s["0020000D"]["Value"][0] for s in by_collection} == {
        s.row["StudyInstanceUID"] for s in twins.values() if s.row["collection_id"] == "covid_19_ar"}
    fhir = requests.get(f"{live.url}/fhir/ImagingStudy", params={"_count": 100},
                        timeout=30).json()
    assert fhir["total"] == len(want) if "total" in fhir else len(fhir["entry"]) == len(want)
    assert _calls(live) == before  # not one bucket request


def test_first_metadata_fetches_the_series_once_then_never_again(live, twins) -> None:
    s = _biggest(twins, "CT")
    url = (f"{live.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
           f"{s.row['SeriesInstanceUID']}/metadata")
    before = _calls(live)
    t0 = time.monotonic()
    first = requests.get(url, timeout=60)
    cold = time.monotonic() - t0
    assert first.status_code == 200, first.text[:300]
    assert len(first.json()) == len(s.objects)
    after = _calls(live)
    assert after.get("ListObjectsV2", 0) - before.get("ListObjectsV2", 0) == 1
    assert after.get("GetObject", 0) - before.get("GetObject", 0) == len(s.objects)
    t0 = time.monotonic()
    again = requests.get(url, timeout=60)
    warm = time.monotonic() - t0
    assert again.status_code == 200 and again.json() == first.json()
    assert _calls(live) == after  # the second read makes no bucket call
    print(f"series metadata, {len(s.objects)} instances: cold {cold * 1000:.0f} ms, "
          f"warm {warm * 1000:.1f} ms")


def test_dicomweb_client_retrieve_gives_the_uploaded_bytes(live, twins) -> None:
    s = _biggest(twins, "DX") if any(t.row["Modality"] == "DX" for t in twins.values()) \
        else _biggest(twins)
    client = DICOMwebClient(f"{live.url}/dicomweb")
    got = client.retrieve_series(s.row["StudyInstanceUID"], s.row["SeriesInstanceUID"])
    assert len(got) == len(s.objects)
    uploaded = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in s.objects.values()}
    archive = _archive(live)
    from gateway.archive.protocol import UidPath
    stored = list(archive.instances(UidPath(s.row["StudyInstanceUID"], s.row["SeriesInstanceUID"])))
    assert {hashlib.sha256(Path(i.local()).read_bytes()).hexdigest() if not i.key else
            hashlib.sha256(b"".join(i.chunks())).hexdigest() for i in stored} == set(uploaded)
    assert {str(ds.SOPInstanceUID) for ds in got} == {i.sop_uid for i in stored}


def test_a_missing_object_is_502_and_nothing_is_cached(live, twins, s3_store, bucket) -> None:
    s = sorted((t for t in twins.values() if len(t.objects) >= 2),
               key=lambda t: t.row["SeriesInstanceUID"])[0]
    assert s.row["SeriesInstanceUID"] not in _archive(live)._fetched
    key = sorted(s.objects)[-1]
    s3_store.client().delete_object(Bucket=bucket, Key=key)
    base = (f"{live.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
            f"{s.row['SeriesInstanceUID']}")
    try:
        r = requests.get(f"{base}/metadata", timeout=60)
        assert r.status_code == 502, r.text[:300]
        assert "missing" in r.json()["message"]
        archive = _archive(live)
        assert not _cached(archive, s.row["SeriesInstanceUID"])  # nothing of it cached
    finally:
        s3_store.client().upload_file(str(s.objects[key]), bucket, key)
    again = requests.get(f"{base}/instances", timeout=60)
    assert again.status_code == 200 and len(again.json()) == len(s.objects)  # fetched afresh


def _cached(archive, series_uid: str) -> int:
    from sqlalchemy import func, select

    from gateway.archive.local.schema import instances, series
    with archive.index.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(
            instances.join(series, instances.c.series_pk == series.c.pk))
            .where(series.c.series_uid == series_uid)).scalar_one()


@pytest.mark.parametrize("bad", ["not DICOM", "another series"])
def test_a_bad_object_is_502_and_nothing_is_cached_nor_spooled(live, twins, s3_store, bucket,
                                                              bad: str) -> None:
    """An object that is not DICOM, or one of another series in the folder: the helper's
    parse (or the series check) refuses it, the whole series is 502 with the reason, and
    neither an instance row nor a spooled file of it is left."""
    fetched = _archive(live)._fetched
    pool = sorted((t for t in twins.values() if len(t.objects) >= 2
                   and t.row["SeriesInstanceUID"] not in fetched),
                  key=lambda t: t.row["SeriesInstanceUID"])
    s, other = pool[1], pool[-1]
    key = sorted(s.objects)[0]
    client = s3_store.client()
    if bad == "not DICOM":
        client.put_object(Bucket=bucket, Key=key, Body=b"this is not a DICOM file" * 40)
    else:
        client.upload_file(str(next(iter(other.objects.values()))), bucket, key)
    archive = _archive(live)
    tmp = Path(archive.files.tmp)
    try:
        r = requests.get(f"{live.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
                         f"{s.row['SeriesInstanceUID']}/metadata", timeout=60)
        assert r.status_code == 502, r.text[:300]
        want = ("is not a DICOM instance" if bad == "not DICOM"
                else f"belongs to series {other.row['SeriesInstanceUID']}")
        assert want in r.json()["message"], r.json()
        assert not _cached(archive, s.row["SeriesInstanceUID"])
        assert s.row["SeriesInstanceUID"] not in archive._fetched
        assert not list(tmp.glob("*.part"))  # no spooled leftover
    finally:
        client.upload_file(str(s.objects[key]), bucket, key)


def test_bucket_down_is_503_in_time_and_nothing_is_cached(live, twins, s3_store) -> None:
    fetched = _archive(live)._fetched
    s = next(t for t in sorted(twins.values(), key=lambda t: t.row["SeriesInstanceUID"])
             if t.row["SeriesInstanceUID"] not in fetched)
    url = (f"{live.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
           f"{s.row['SeriesInstanceUID']}/metadata")
    s3_store.pause()
    try:
        t0 = time.monotonic()
        r = requests.get(url, timeout=60)
        took = time.monotonic() - t0
        assert r.status_code == 503, r.text[:300]
        assert r.headers.get("Retry-After")
        assert took < 2.0 + 1.5, took
        series = requests.get(f"{live.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series",
                              timeout=30)
        assert series.status_code == 200  # searches still answer from the index
    finally:
        s3_store.resume()
    assert s.row["SeriesInstanceUID"] not in _archive(live)._fetched
    assert not _cached(_archive(live), s.row["SeriesInstanceUID"])
    r = requests.get(url, timeout=60)
    assert r.status_code == 200 and len(r.json()) == len(s.objects)


def test_research_study_per_collection_from_collections_index(live) -> None:
    bundle = requests.get(f"{live.url}/fhir/ResearchStudy", timeout=30,
                          headers={"Accept": "application/fhir+json"}).json()
    studies = {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])}
    assert set(studies) == set(COLLECTIONS)
    ar = studies["COVID-19-AR"]
    assert {"system": "https://doi.org", "value": "10.7937/tcia.2020.py71-5978",
            "type": {"text": "DOI"}} in ar["identifier"]
    kinds = {a["type"]: a for a in ar["relatedArtifact"]}
    assert "CC BY 4.0" in kinds["documentation"]["display"]
    assert "10.7937/tcia.2020.py71-5978" in kinds["citation"]["citation"].lower()
    from fhir.resources.R4B.researchstudy import ResearchStudy
    ResearchStudy.model_validate(ar) if hasattr(ResearchStudy, "model_validate") \
        else ResearchStudy.parse_obj(ar)


@pytest.fixture(scope="module")
def scp(live):
    from gateway.scp import server as scp_server
    from tests.support.procs import free_port
    port = free_port()
    settings = live.app.extensions["tcia_gateway"]["settings"]
    srv = scp_server.start(settings, _archive(live), bind=f"127.0.0.1:{port}")
    yield settings.ae_title, port
    srv.shutdown()


def test_dimse_find_from_the_index_and_get_fetches_once(live, scp, twins, tmp_path) -> None:
    from tests.support.dcmtk import findscu, getscu
    aet, port = scp
    before = _calls(live)
    found = findscu(aet, port, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "",
                                "ModalitiesInStudy": ""}, tmp_path / "find")
    assert {str(ds.StudyInstanceUID) for ds in found.responses} == {
        s.row["StudyInstanceUID"] for s in twins.values()}
    assert _calls(live) == before  # C-FIND from the index
    fetched = _archive(live)._fetched
    s = max((t for t in twins.values() if t.row["SeriesInstanceUID"] not in fetched),
            key=lambda t: len(t.objects))
    getscu(aet, port, {"QueryRetrieveLevel": "SERIES",
                       "StudyInstanceUID": s.row["StudyInstanceUID"],
                       "SeriesInstanceUID": s.row["SeriesInstanceUID"]}, tmp_path / "get")
    import pydicom
    got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in (tmp_path / "get").iterdir()}
    want = {str(pydicom.dcmread(p).SOPInstanceUID) for p in s.objects.values()}
    assert got == want
    after = _calls(live)
    assert after.get("GetObject", 0) - before.get("GetObject", 0) == len(s.objects)
    assert after.get("ListObjectsV2", 0) - before.get("ListObjectsV2", 0) == 1


def test_stow_and_c_store_are_refused_and_nothing_is_stored(live, scp, twins) -> None:
    """IDC's bucket is read-only: STOW is 501 with the reason, C-STORE 0xC000, no row."""
    import pydicom
    from pydicom.uid import generate_uid
    from pynetdicom import AE
    s = next(iter(twins.values()))
    ds = pydicom.dcmread(next(iter(s.objects.values())))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    archive = _archive(live)
    before = archive.index.counts()["instances"]
    client = DICOMwebClient(f"{live.url}/dicomweb")
    with pytest.raises(requests.HTTPError) as refused:
        client.store_instances([ds])
    assert refused.value.response.status_code == 501
    assert "read-only" in refused.value.response.text
    aet, port = scp
    ae = AE(ae_title="SCU")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_store(ds).Status) == 0xC000
    finally:
        assoc.release()
    assert archive.index.counts()["instances"] == before
    assert not archive.index.existing([str(ds.SOPInstanceUID)])


def test_gunicorn_workers_share_one_loaded_index_and_serve_a_cold_series(
        tmp_path, s3_store, bucket, index, twins, artifacts_dir) -> None:
    """The real entry: `serve` (gunicorn, 2 workers) with BACKEND=idc from GATEWAY_*; the
    workers load the index once between them; concurrent first reads of one series agree."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.procs import start_gateway
    from tests.support.seaweed import ACCESS_KEY, REGION, SECRET_KEY
    env = {"GATEWAY_BACKEND": "idc", "GATEWAY_IDC_BUCKET_URL": f"s3://{bucket}",
           "GATEWAY_IDC_ENDPOINT_URL": s3_store.endpoint_url, "GATEWAY_IDC_REGION": REGION,
           "GATEWAY_IDC_ACCESS_KEY_ID": ACCESS_KEY, "GATEWAY_IDC_SECRET_ACCESS_KEY": SECRET_KEY,
           "GATEWAY_IDC_INDEX": str(index), "GATEWAY_IDC_TIMEOUT": "5"}
    server = start_gateway(tmp_path / "data", artifacts_dir / "logs", workers=2, env=env)
    try:
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
        s = _biggest(twins, "CT")
        url = (f"{server.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
               f"{s.row['SeriesInstanceUID']}/metadata")
        with ThreadPoolExecutor(4) as ex:
            answers = list(ex.map(lambda _i: requests.get(url, timeout=60), range(4)))
        assert [a.status_code for a in answers] == [200] * 4
        assert all(a.json() == answers[0].json() for a in answers)
        assert len(answers[0].json()) == len(s.objects)
        studies = requests.get(f"{server.url}/dicomweb/studies", timeout=30).json()
        assert len(studies) == len({t.row["StudyInstanceUID"] for t in twins.values()})
    finally:
        server.stop()


def test_a_cohort_download_fetches_its_series_and_carries_licence_and_citation(
        live, twins) -> None:
    """A cohort of series never opened: the download fetches each once (one listing, one
    GET per object), then streams every uploaded byte, with each collection's LICENSE and
    the CITATION file (idc-index-data's collections_index)."""
    import io
    import zipfile
    fetched = set(_archive(live)._fetched)
    chosen = [next(t for t in sorted(twins.values(), key=lambda t: t.row["SeriesInstanceUID"],
                                     reverse=True)
                   if t.row["collection_id"] == cid and t.row["SeriesInstanceUID"] not in fetched)
              for cid in ("covid_19_ar", "midrc_ricord_1c")]
    made = requests.post(f"{live.url}/cohorts", timeout=60,
                         json={"series": [s.row["SeriesInstanceUID"] for s in chosen]})
    assert made.status_code == 201, made.text
    cohort = requests.get(made.headers["Location"], timeout=30).json()
    before = _calls(live)
    r = requests.get(f"{live.url}/cohorts/{cohort['id']}/download", timeout=120)
    assert r.status_code == 200, r.text[:300]
    after = _calls(live)
    assert after.get("ListObjectsV2", 0) - before.get("ListObjectsV2", 0) == 2
    assert after.get("GetObject", 0) - before.get("GetObject", 0) == sum(
        len(s.objects) for s in chosen)
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    dicom = sorted(hashlib.sha256(zf.read(n)).hexdigest() for n in names if n.endswith(".dcm"))
    assert dicom == sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                           for s in chosen for p in s.objects.values())
    top = f"cohort-{cohort['id']}/"
    ar = zf.read(top + "COVID-19-AR/LICENSE").decode()
    ricord = zf.read(top + "MIDRC-RICORD-1C/LICENSE").decode()
    assert "CC BY 4.0" in ar and "creativecommons.org/licenses/by/4.0" in ar
    assert "CC BY-NC 4.0" in ricord and "creativecommons.org/licenses/by-nc/4.0" in ricord
    citation = zf.read(top + "CITATION").decode().lower()
    assert "10.7937/tcia.2020.py71-5978" in citation and "10.7937/91ah-v663" in citation
    again = requests.get(f"{live.url}/cohorts/{cohort['id']}/download", timeout=120)
    assert again.content == r.content and _calls(live) == after  # no bucket call the 2nd time


def test_imaging_study_tells_its_collections_licence(live, twins) -> None:
    s = next(iter(twins.values())).row
    study = requests.get(f"{live.url}/fhir/ImagingStudy/{s['StudyInstanceUID']}",
                         timeout=30).json()
    name = {"covid_19_ar": "COVID-19-AR", "midrc_ricord_1c": "MIDRC-RICORD-1C"}[s["collection_id"]]
    research = [e["valueReference"]["reference"] for e in study["extension"]
                if e["url"].endswith("/workflow-researchStudy")]
    assert research == [f"ResearchStudy/{name}"]
    licences = [e["valueRelatedArtifact"] for e in study["extension"]
                if e["url"].endswith("workflow-relatedArtifact")
                and e["valueRelatedArtifact"]["type"] == "documentation"]
    assert len(licences) == 1 and "CC BY" in licences[0]["display"]
