"""The archive on an S3 object store (SeaweedFS): keys, bytes, ranged frames, multipart,
write-once objects, the orphan sweeper, and a hung store (SIGSTOP) answering 503 in time."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from gateway.archive.local import open_local
from gateway.archive.protocol import Level, Query, UidPath
from gateway.dicomweb import multipart
from gateway.ingest.importer import run_import
from tests.support.dicomfiles import make_file
from tests.support.procs import GatewayServer, start_gateway
from tests.support.s3gateway import s3_env, s3_settings

TIMEOUT = 2.0
DICOM_CT = 'multipart/related; type="application/dicom"; boundary=b0undary'


@pytest.fixture(scope="module")
def bucket(s3_store) -> str:
    return s3_store.create_bucket("store-tests")


@pytest.fixture(scope="module")
def data(tmp_path_factory, s3_store, bucket, small_cohort) -> Path:
    data = tmp_path_factory.mktemp("s3data")
    archive = open_local(s3_settings(s3_store, data, f"s3://{bucket}/arch"))
    report = run_import(archive, [small_cohort.root], workers=2, progress=False)
    assert report.new == small_cohort.instances and not report.rejected
    archive.close()
    return data


@pytest.fixture(scope="module")
def server(data, s3_store, bucket, artifacts_dir) -> Iterator[GatewayServer]:
    srv = start_gateway(data, artifacts_dir / "logs", workers=2,
                        env=s3_env(s3_store, f"s3://{bucket}/arch", s3_timeout=TIMEOUT))
    yield srv
    srv.stop()


@pytest.fixture
def archive(data, s3_store, bucket):
    arch = open_local(s3_settings(s3_store, data, f"s3://{bucket}/arch"), sweep=False)
    yield arch
    arch.close()


def _objects(s3_store, bucket: str, prefix: str) -> dict[str, int]:
    pages = s3_store.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix)
    return {o["Key"]: o["Size"] for p in pages for o in p.get("Contents", [])}


def _instances(archive) -> list:
    found = []
    for s in archive.search(Query(Level.SERIES)).matches:
        found += archive.instances(UidPath(s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]))
    return found


def test_one_object_per_instance_and_no_uid_in_any_key(archive, s3_store, bucket) -> None:
    objects = _objects(s3_store, bucket, "arch/")
    insts = _instances(archive)
    assert len(objects) == len(insts) > 20
    uids = {u for i in insts for u in (i.study_uid, i.series_uid, i.sop_uid)}
    assert not any(u in key for key in objects for u in uids)
    assert sorted(objects[f"arch/{i.key}"] for i in insts) == sorted(i.size for i in insts)


def test_retrieve_and_frames_are_the_stored_bytes(server, archive) -> None:
    ct = next(i for i in _instances(archive) if i.frames and i.number_of_frames >= 1)
    base = f"{server.url}/dicomweb/studies/{ct.study_uid}/series/{ct.series_uid}"
    r = requests.get(f"{server.url}/wado", params={
        "requestType": "WADO", "studyUID": ct.study_uid, "seriesUID": ct.series_uid,
        "objectUID": ct.sop_uid, "contentType": "application/dicom"}, timeout=30)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == ct.size
    assert hashlib.sha256(r.content).hexdigest() == _sha(archive, ct.sop_uid)
    series = requests.get(base, headers={"Accept": 'multipart/related; type="application/dicom"'},
                          timeout=30)
    assert series.status_code == 200
    assert int(series.headers["Content-Length"]) == len(series.content)
    frame = requests.get(f"{base}/instances/{ct.sop_uid}/frames/1",
                         headers={"Accept": "multipart/related; type=application/octet-stream"},
                         timeout=30)
    assert frame.status_code == 200
    wanted = b"".join(r.content[f.offset:f.offset + f.length] for f in ct.frames[0])
    assert wanted in frame.content


def _sha(archive, sop: str) -> str:
    return archive.index.existing([sop])[sop].sha256


def test_large_instance_goes_up_in_parts_and_comes_back_whole(tmp_path, s3_store, bucket) -> None:
    arch = open_local(s3_settings(s3_store, tmp_path / "d", f"s3://{bucket}/multi",
                                  s3_multipart_threshold=5 << 20))
    try:
        big = make_file(tmp_path / "big.dcm", study="BIG", size=1200, frames=2, BitsAllocated=16)
        assert big.stat().st_size > 5 << 20
        assert arch.store(big).ok
        inst = next(arch.instances(UidPath()))
        head = s3_store.client().head_object(Bucket=bucket, Key="multi/" + inst.key)
        assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
        assert b"".join(inst.chunks()) == big.read_bytes()
        assert not list((tmp_path / "d" / "tmp").iterdir())  # the spooled file is gone
    finally:
        arch.close()


def test_objects_are_written_once(archive) -> None:
    inst = _instances(archive)[0]
    spool = archive.files.spool()
    spool.write(b"other bytes")
    archive.files.put_now(spool.finish(), inst.key)  # If-None-Match: * refuses, silently
    assert hashlib.sha256(b"".join(inst.chunks())).hexdigest() == _sha(archive, inst.sop_uid)


def test_orphans_are_swept_after_their_grace_and_a_retried_store_succeeds(
        tmp_path, s3_store, bucket) -> None:
    arch = open_local(s3_settings(s3_store, tmp_path / "d", f"s3://{bucket}/orph"))
    try:
        path = make_file(tmp_path / "a.dcm", study="ORPH")
        received = arch.files.receive(path)
        key = arch.files.key("", "", "", received.sha256)
        arch.files.put_now(received, key)  # a node that died after its PUT, before its commit
        assert arch.sweep_orphans(3600) == 0 and arch.files.exists(key)  # young: kept
        first = arch.store(path)  # the client's retry
        assert first.ok and first.outcome.value == "stored"
        assert len(_objects(s3_store, bucket, "orph/")) == 2
        assert arch.sweep_orphans(0) == 1 and not arch.files.exists(key)
        inst = next(arch.instances(UidPath()))
        assert b"".join(inst.chunks()) == path.read_bytes()  # the indexed object stays
        assert arch.store(path).outcome.value == "duplicate"
        assert len(_objects(s3_store, bucket, "orph/")) == 1
    finally:
        arch.close()


def test_metadata_and_qido_never_touch_the_store(server, archive, s3_store) -> None:
    inst = _instances(archive)[-1]
    s3_store.pause()
    try:
        t0 = time.monotonic()
        q = requests.get(f"{server.url}/dicomweb/studies", timeout=10)
        m = requests.get(f"{server.url}/dicomweb/studies/{inst.study_uid}/series/"
                         f"{inst.series_uid}/metadata", timeout=10)
        assert q.status_code == 200 and m.status_code == 200 and m.json()
        assert time.monotonic() - t0 < 1.0
    finally:
        s3_store.resume()


def test_hung_store_is_503_with_retry_after_within_the_timeout_and_recovers(
        server, archive, s3_store, tmp_path) -> None:
    cold = [i for i in _instances(archive) if i.frames][-3:]  # not read by earlier tests
    pid = server.proc.pid
    body = multipart.encode([("application/dicom",
                              make_file(tmp_path / "n.dcm", study="HUNG").read_bytes())],
                            "b0undary")
    requests_ = {
        "frame": lambda i: requests.get(
            f"{server.url}/dicomweb/studies/{i.study_uid}/series/{i.series_uid}/instances/"
            f"{i.sop_uid}/frames/1", timeout=30,
            headers={"Accept": "multipart/related; type=application/octet-stream"}),
        "instance": lambda i: requests.get(
            f"{server.url}/dicomweb/studies/{i.study_uid}/series/{i.series_uid}/instances/"
            f"{i.sop_uid}", headers={"Accept": 'multipart/related; type="application/dicom"'},
            timeout=30),
        "stow": lambda i: requests.post(f"{server.url}/dicomweb/studies", data=body, timeout=30,
                                        headers={"Content-Type": DICOM_CT}),
        "readyz": lambda i: requests.get(f"{server.url}/readyz", timeout=30),
    }
    s3_store.pause()
    try:
        for n, (what, call) in enumerate(requests_.items()):
            t0 = time.monotonic()
            r = call(cold[n % len(cold)])
            took = time.monotonic() - t0
            assert r.status_code == 503, (what, r.status_code, r.text[:200])
            assert r.headers.get("Retry-After"), what
            assert took < TIMEOUT + 1, (what, took)
        assert "object store" in r.json()["reason"]
    finally:
        s3_store.resume()
    for n, (what, call) in enumerate(requests_.items()):
        r = call(cold[n % len(cold)])
        assert r.status_code == 200, (what, r.status_code, r.text[:200])
    assert server.proc.pid == pid and server.proc.popen.poll() is None  # no restart


def test_the_hot_cache_stays_under_its_cap(tmp_path, data, archive, s3_store, bucket) -> None:
    """Every object read once through a hot cache of ~3 objects (another node: its own
    DATA_DIR, the same index and bucket): it never holds more than the cap plus the entry
    being added, and the newest stay."""
    insts = _instances(archive)
    cap = 3 * max(i.size for i in insts)
    node = open_local(s3_settings(s3_store, tmp_path / "node", f"s3://{bucket}/arch",
                                  database_url=f"sqlite:///{data / 'index.sqlite'}",
                                  cache_max_bytes=cap), sweep=False)
    try:
        hot = tmp_path / "node" / "hot"
        for inst in _instances(node):
            assert inst.local().read_bytes()[128:132] == b"DICM"
            assert sum(p.stat().st_size for p in hot.iterdir()) <= cap + inst.size
        last = _instances(node)[-1]
        assert node.files.cached(last.key) is not None  # the most recent entry stayed
        assert 0 < len(list(hot.iterdir())) < len(insts)
    finally:
        node.close()


def test_file_url_names_where_the_files_go(tmp_path) -> None:
    from gateway.config import Settings
    where = tmp_path / "elsewhere"
    arch = open_local(Settings().replace(data_dir=tmp_path / "d", store_url=f"file://{where}"))
    try:
        assert arch.store(make_file(tmp_path / "a.dcm", study="FILEURL")).ok
        inst = next(arch.instances(UidPath()))
        assert inst.path.is_relative_to(where) and inst.path.exists()
        assert not list((tmp_path / "d" / "files").rglob("*.dcm"))
    finally:
        arch.close()
