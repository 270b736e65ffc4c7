"""BACKEND=idc with a bounded cache (CACHE_MAX_BYTES): fetched series are evicted least
recently read first, the bytes stay under the cap, searches still answer an evicted series
from the index, and an evicted series is fetched again on demand, byte for byte."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest
import requests

from gateway.archive.protocol import UidPath
from tests.support.idc import IdcSeries, LiveApp, idc_settings, scan, serve, synth_twin, upload, write_index


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, IdcSeries]:
    root = synth_twin(tmp_path_factory.mktemp("evict-twin") / "AR", "COVID-19-AR", patients=2)
    return scan(root, "COVID-19-AR")


@pytest.fixture(scope="module")
def live(tmp_path_factory, s3_store, twins) -> Iterator[LiveApp]:
    bucket = s3_store.create_bucket("idc-evict")
    upload(s3_store, bucket, list(twins.values()))
    index = write_index(list(twins.values()), tmp_path_factory.mktemp("evict-idx") / "i.parquet")
    cap = int(1.5 * max(_bytes(s) for s in twins.values()))
    settings = idc_settings(s3_store, tmp_path_factory.mktemp("evict-data"), bucket, index,
                            cache_max_bytes=cap, cache_high_watermark=0.9,
                            cache_low_watermark=0.5, cache_purge_delay=0.0)
    yield from serve(settings)


def _bytes(s: IdcSeries) -> int:
    return sum(p.stat().st_size for p in s.objects.values())


def _digests(archive, s: IdcSeries) -> set[str]:
    where = UidPath(s.row["StudyInstanceUID"], s.row["SeriesInstanceUID"])
    return {hashlib.sha256(b"".join(i.chunks())).hexdigest() for i in archive.instances(where)}


def test_bytes_stay_under_the_cap_and_an_evicted_series_comes_back_identical(live, twins) -> None:
    archive = live.app.extensions["tcia_gateway"]["archive"]
    cap = archive.evictor.max_bytes
    order = sorted(twins.values(), key=lambda s: -_bytes(s))[:4]
    for s in order:
        r = requests.get(f"{live.url}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
                         f"{s.row['SeriesInstanceUID']}/metadata", timeout=60)
        assert r.status_code == 200 and len(r.json()) == len(s.objects)
        assert archive.evictor.cached_bytes() <= max(cap, _bytes(s))
        on_disk = sum(f.stat().st_size for f in Path(archive.files.files).rglob("*") if f.is_file())
        assert on_disk <= max(cap, _bytes(s))  # the evicted series' files are gone too
    first = order[0]
    assert first.row["SeriesInstanceUID"] not in archive._fetched  # evicted by the later ones
    listed = requests.get(f"{live.url}/dicomweb/studies/{first.row['StudyInstanceUID']}/series",
                          timeout=30).json()
    mine = next(x for x in listed if x["0020000E"]["Value"][0] == first.row["SeriesInstanceUID"])
    assert mine["00201209"]["Value"] == [len(first.objects)]  # the index's count stays
    gets = archive.bucket.calls.get("GetObject", 0)
    assert _digests(archive, first) == {hashlib.sha256(p.read_bytes()).hexdigest()
                                        for p in first.objects.values()}
    assert archive.bucket.calls.get("GetObject", 0) - gets == len(first.objects)  # fetched again


def test_on_postgresql_the_index_loads_and_a_series_is_fetched(
        tmp_path, postgres, s3_store, twins) -> None:
    """The same backend with DATABASE_URL on PostgreSQL (bulk load through psycopg, the
    advisory locks of the load and of the fetch)."""
    from gateway.backends.idc import open_idc
    bucket = s3_store.create_bucket("idc-pg")
    upload(s3_store, bucket, list(twins.values()))
    padded = [IdcSeries({**t.row, "SeriesDescription": (t.row["SeriesDescription"] or "") +
                         "\x00\x00"}, t.objects) for t in twins.values()]  # as 240 real rows are
    index = write_index(padded, tmp_path / "i.parquet")
    settings = idc_settings(s3_store, tmp_path / "data", bucket, index,
                            database_url=postgres.create_database("idc_pg"))
    archive = open_idc(settings)
    try:
        assert archive.index.counts()["series"] == len(twins)
        s = max(twins.values(), key=lambda t: len(t.objects))
        where = UidPath(s.row["StudyInstanceUID"], s.row["SeriesInstanceUID"])
        assert len(list(archive.instances(where))) == len(s.objects)
        assert archive.bucket.calls["GetObject"] == len(s.objects)
        again = open_idc(settings)  # a second process: the index is loaded already
        try:
            assert again.index.counts() == archive.index.counts()
        finally:
            again.close()
    finally:
        archive.close()


def test_a_series_evicted_by_another_process_is_fetched_again_not_404(
        tmp_path, s3_store, twins) -> None:
    """Two archives on one data dir (two workers): what one remembers as fetched, the other
    evicts; the first one's next read fetches it again."""
    from gateway.backends.idc import open_idc
    bucket = s3_store.create_bucket("idc-evict-two")
    upload(s3_store, bucket, list(twins.values()))
    index = write_index(list(twins.values()), tmp_path / "i.parquet")
    order = sorted(twins.values(), key=lambda s: -_bytes(s))[:3]
    settings = idc_settings(s3_store, tmp_path / "data", bucket, index,
                            cache_max_bytes=int(1.2 * _bytes(order[0])),
                            cache_low_watermark=0.5, cache_purge_delay=0.0)
    one, two = open_idc(settings), open_idc(settings)
    try:
        first = order[0]
        where = UidPath(first.row["StudyInstanceUID"], first.row["SeriesInstanceUID"])
        assert len(list(one.instances(where))) == len(first.objects)
        for s in order[1:]:  # the other worker's reads push the first series out
            two.metadata(UidPath(s.row["StudyInstanceUID"], s.row["SeriesInstanceUID"]))
        assert first.row["SeriesInstanceUID"] in one._fetched  # stale in the first worker
        assert len(list(one.instances(where))) == len(first.objects)
        assert one.bucket.calls["GetObject"] == 2 * len(first.objects)
    finally:
        one.close()
        two.close()


def test_fetched_series_go_into_the_gateways_own_object_store(tmp_path, s3_store, twins) -> None:
    """STORE_URL=s3://: the series fetched from IDC's bucket land as objects of the gateway's
    own bucket (one per instance), and read back byte for byte."""
    from gateway.backends.idc import open_idc
    from tests.support.s3gateway import s3_changes
    source = s3_store.create_bucket("idc-source-own")
    own = s3_store.create_bucket("gateway-own")
    upload(s3_store, source, list(twins.values()))
    index = write_index(list(twins.values()), tmp_path / "i.parquet")
    settings = idc_settings(s3_store, tmp_path / "data", source, index,
                            **s3_changes(s3_store, f"s3://{own}/cache"))
    archive = open_idc(settings)
    try:
        s = max(twins.values(), key=lambda t: len(t.objects))
        assert _digests(archive, s) == {hashlib.sha256(p.read_bytes()).hexdigest()
                                        for p in s.objects.values()}
        listed = s3_store.client().list_objects_v2(Bucket=own, Prefix="cache/")
        assert listed.get("KeyCount", 0) == len(s.objects)
    finally:
        archive.close()
