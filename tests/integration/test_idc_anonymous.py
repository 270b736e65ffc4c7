"""BACKEND=idc without credentials, as against the real public bucket (``s3://idc-open-data``
is read with unsigned requests): a SeaweedFS whose ``anonymous`` identity may Read and List
(a public bucket) serves a cold series to a gateway that has no keys, and the same gateway
against a store that refuses anonymous requests answers 502 with the store's refusal,
nothing cached, while its searches still answer from the index."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support.idc import IdcSeries, idc_settings, scan, serve, synth_twin, upload, write_index
from tests.support.seaweed import Seaweed, start_seaweed

JSON = {"Accept": "application/dicom+json"}


@pytest.fixture(scope="module")
def public_store(artifacts_dir: Path) -> Iterator[Seaweed]:
    store = start_seaweed(artifacts_dir / "logs", anonymous=("Read", "List"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> dict[str, IdcSeries]:
    return scan(synth_twin(tmp_path_factory.mktemp("anon-twin"), "COVID-19-AR", patients=1),
                "COVID-19-AR")


@pytest.fixture(scope="module")
def index(tmp_path_factory, twin) -> Path:
    return write_index(list(twin.values()), tmp_path_factory.mktemp("anon-index") / "i.parquet")


def _unsigned(store: Seaweed, data_dir: Path, bucket: str, index: Path):
    """The gateway's settings with no IDC keys at all (the default for the public bucket)."""
    return idc_settings(store, data_dir, bucket, index, idc_access_key_id="",
                        idc_secret_access_key="", idc_timeout=3.0)


def _series_url(live_url: str, s: IdcSeries) -> str:
    return (f"{live_url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
            f"{s.row['SeriesInstanceUID']}")


def test_a_public_bucket_is_read_with_unsigned_requests(public_store, twin, index,
                                                        tmp_path) -> None:
    bucket = public_store.create_bucket("idc-open-data-public")
    upload(public_store, bucket, list(twin.values()))
    s = max(twin.values(), key=lambda t: len(t.objects))
    key = sorted(s.objects)[0]
    plain = requests.get(f"{public_store.endpoint_url}/{bucket}/{key}", timeout=10)
    assert plain.status_code == 200 and plain.content == s.objects[key].read_bytes()
    live = serve(_unsigned(public_store, tmp_path / "data", bucket, index))
    app = next(live)
    try:
        archive = app.app.extensions["tcia_gateway"]["archive"]
        meta = requests.get(_series_url(app.url, s) + "/metadata", headers=JSON, timeout=60)
        assert meta.status_code == 200, meta.text[:300]
        assert len(meta.json()) == len(s.objects)
        assert archive.bucket.calls["ListObjectsV2"] == 1
        assert archive.bucket.calls["GetObject"] == len(s.objects)
        from gateway.archive.protocol import UidPath
        stored = archive.instances(UidPath(s.row["StudyInstanceUID"], s.row["SeriesInstanceUID"]))
        uploaded = {hashlib.sha256(p.read_bytes()).hexdigest() for p in s.objects.values()}
        assert {hashlib.sha256(Path(i.local()).read_bytes()).hexdigest()
                for i in stored} == uploaded  # the cache holds the bucket's bytes
        dicom = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        whole = requests.get(_series_url(app.url, s), headers={"Accept": dicom}, timeout=60)
        assert whole.status_code == 200 and whole.content.count(b"DICM") >= len(s.objects)
        assert archive.bucket.calls["GetObject"] == len(s.objects)  # and no call more
    finally:
        next(live, None)


def test_a_bucket_refusing_anonymous_reads_is_502_and_nothing_cached(s3_store, twin, index,
                                                                     tmp_path) -> None:
    bucket = s3_store.create_bucket("idc-private")
    upload(s3_store, bucket, list(twin.values()))
    s = max(twin.values(), key=lambda t: len(t.objects))
    live = serve(_unsigned(s3_store, tmp_path / "data", bucket, index))
    app = next(live)
    try:
        r = requests.get(_series_url(app.url, s) + "/metadata", headers=JSON, timeout=60)
        assert r.status_code == 502, r.text[:300]
        assert "AccessDenied" in r.json()["message"] and bucket in r.json()["message"]
        archive = app.app.extensions["tcia_gateway"]["archive"]
        assert s.row["SeriesInstanceUID"] not in archive._fetched
        studies = requests.get(f"{app.url}/dicomweb/studies", headers=JSON, timeout=30)
        assert studies.status_code == 200 and len(studies.json()) == len(
            {t.row["StudyInstanceUID"] for t in twin.values()})  # searches: the index
    finally:
        next(live, None)
