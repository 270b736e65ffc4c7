"""Many nodes, one archive: nginx in front of 3 gateway processes (gunicorn) on one
PostgreSQL and one SeaweedFS bucket. What one node writes every node answers at once; a
node killed in the middle of a STOW leaves nothing half-stored and the client's retry
succeeds; a fourth node serves as soon as it is up."""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from sqlalchemy import create_engine, select

from gateway.archive.local import open_local
from gateway.archive.local.schema import instances
from gateway.config import Settings
from gateway.dicomweb import multipart
from tests.support.dicomfiles import make_file, uid
from tests.support.s3gateway import s3_changes
from tests.support.topology import Topology, topology

DICOM_CT = 'multipart/related; type="application/dicom"; boundary=b0undary'
JSON = {"Accept": "application/dicom+json"}


@pytest.fixture(scope="module")
def shared(postgres, s3_store) -> tuple[str, str]:
    return postgres.create_database("topology"), s3_store.create_bucket("topology")


@pytest.fixture(scope="module")
def topo(tmp_path_factory, artifacts_dir, shared, s3_store) -> Iterator[Topology]:
    db, bucket = shared
    t = topology(tmp_path_factory.mktemp("topo"), artifacts_dir / "logs", db, s3_store, bucket)
    try:
        t.start_nodes(3)  # at once, on an empty database: schema creation is locked
        t.start_nginx()
        yield t
    finally:
        t.stop()


def _stow(url: str, files: list[Path], timeout: float = 60) -> requests.Response:
    body = multipart.encode([("application/dicom", p.read_bytes()) for p in files], "b0undary")
    return requests.post(f"{url}/dicomweb/studies", data=body, timeout=timeout,
                         headers={"Content-Type": DICOM_CT, **JSON})


def _count(url: str, study: str) -> int:
    r = requests.get(f"{url}/dicomweb/studies/{study}/instances", headers=JSON, timeout=30)
    assert r.status_code in (200, 204), (url, r.status_code, r.text[:300])
    return 0 if r.status_code == 204 else len(r.json())


def test_a_stow_through_node_1_is_seen_at_once_by_nodes_2_and_3(topo, tmp_path) -> None:
    files = [make_file(tmp_path / f"{i}.dcm", study="SEEN", series="S", sop=f"I{i}",
                       InstanceNumber=i + 1) for i in range(3)]
    study, series = uid("study", "SEEN"), uid("series", "S")
    for node in topo.nodes[1:]:  # warm every node's caches first: they must not go stale
        assert _count(node.url, study) == 0
        requests.get(f"{node.url}/fhir/ImagingStudy", params={"_id": study}, timeout=30)
    assert _stow(topo.nodes[0].url, files[:2]).status_code == 200
    for node in topo.nodes[1:]:
        assert _count(node.url, study) == 2
        meta = requests.get(f"{node.url}/dicomweb/studies/{study}/series/{series}/metadata",
                            headers=JSON, timeout=30)
        assert meta.status_code == 200 and len(meta.json()) == 2
        bundle = requests.get(f"{node.url}/fhir/ImagingStudy", params={"_id": study},
                              timeout=30).json()
        assert bundle["total"] == 1
        assert bundle["entry"][0]["resource"]["numberOfInstances"] == 2
    assert _stow(topo.nodes[0].url, files[2:]).status_code == 200  # the series changes
    for node in topo.nodes[1:]:
        meta = requests.get(f"{node.url}/dicomweb/studies/{study}/series/{series}/metadata",
                            headers=JSON, timeout=30)
        assert len(meta.json()) == 3
        bundle = requests.get(f"{node.url}/fhir/ImagingStudy", params={"_id": study},
                              timeout=30).json()
        assert bundle["entry"][0]["resource"]["numberOfInstances"] == 3
    frame = requests.get(f"{topo.base}/dicomweb/studies/{study}/series/{series}/instances/"
                         f"{uid('sop', 'I2')}/frames/1", timeout=30,
                         headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert frame.status_code == 200


def _rows(db: str, study: str) -> list:
    engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(instances.c.path, instances.c.sha256,
                                            instances.c.sop_uid)))
    finally:
        engine.dispose()


def _keys(s3_store, bucket: str) -> set[str]:
    pages = s3_store.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix="archive/")
    return {o["Key"][len("archive/"):] for p in pages for o in p.get("Contents", [])}


def test_a_node_killed_in_the_middle_of_a_stow_leaves_nothing_half_stored(
        topo, tmp_path, shared, s3_store) -> None:
    db, bucket = shared
    files = [make_file(tmp_path / f"{i}.dcm", study="KILL", series="KS", sop=f"K{i}", size=256,
                       InstanceNumber=i + 1) for i in range(50)]
    study = uid("study", "KILL")
    before = _keys(s3_store, bucket)
    victim = topo.nodes[1]
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            outcome["status"] = _stow(victim.url, files).status_code
        except requests.RequestException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 60
    while len(_keys(s3_store, bucket) - before) < 1 and time.monotonic() < deadline \
            and sender.is_alive():
        time.sleep(0.01)
    at_kill = len(_keys(s3_store, bucket) - before)
    victim.proc.kill()  # SIGKILL, master and worker, in the middle of placing objects
    sender.join(30)
    keys = _keys(s3_store, bucket)
    rows = _rows(db, study)
    killed_mid_way = "error" in outcome and not rows  # objects placed, rows not yet
    assert {r.path for r in rows} <= keys  # no index row without its object
    served = _count(topo.nodes[0].url, study)
    assert served in (0, 50)  # one transaction: all of the STOW or none of it
    retry = _stow(topo.base, files)  # the client's retry, through nginx
    assert retry.status_code == 200, retry.text[:300]
    assert _count(topo.base, study) == 50 and _count(topo.nodes[2].url, study) == 50
    rows = _rows(db, study)
    keys = _keys(s3_store, bucket)
    assert {r.path for r in rows} <= keys
    for sop in (uid("sop", "K0"), uid("sop", "K49")):  # whole instances, byte for byte
        r = requests.get(f"{topo.base}/wado", timeout=30, params={
            "requestType": "WADO", "studyUID": study, "seriesUID": uid("series", "KS"),
            "objectUID": sop, "contentType": "application/dicom"})
        path = files[0] if sop.endswith(uid("sop", "K0")) else files[49]
        assert r.status_code == 200 and r.content == path.read_bytes()
    archive = open_local(Settings().replace(data_dir=tmp_path / "sweeper", database_url=db,
                                            **s3_changes(s3_store, f"s3://{bucket}/archive")))
    try:
        orphans = keys - {r.path for r in _rows(db, study)}
        assert archive.sweep_orphans(0) == len(orphans)
    finally:
        archive.close()
    assert _keys(s3_store, bucket) == {r.path for r in _rows(db, study)}
    print(f"objects at the kill: {at_kill}, killed between PUTs and commit: {killed_mid_way}, "
          f"orphans swept: {len(orphans)}")
    assert not killed_mid_way or orphans  # the dead node's objects were the orphans


def test_a_fourth_node_added_under_load_serves_at_once(topo, tmp_path) -> None:
    study = uid("study", "SEEN")
    stop = threading.Event()
    answers: list[int] = []

    def load() -> None:
        while not stop.is_set():
            answers.append(requests.get(f"{topo.base}/dicomweb/studies", headers=JSON,
                                        timeout=30).status_code)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        fourth = topo.add_node()
        assert _count(fourth.url, study) == 3
        assert requests.get(f"{fourth.url}/readyz", timeout=10).status_code == 200
        topo.start_nginx()  # nginx's upstream list with the fourth node
        assert _count(topo.base, study) == 3
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answers and set(answers) == {200}
    digest = {hashlib.sha256(requests.get(f"{n.url}/dicomweb/studies", headers=JSON, timeout=30)
                             .content.replace(n.url.encode(), b"")).hexdigest()
              for n in [topo.nodes[0], topo.nodes[2], topo.nodes[3]]}  # links name the node
    assert len(digest) == 1  # the same answer from every live node


def test_postgresql_restarted_under_the_nodes(tmp_path, artifacts_dir, s3_store) -> None:
    """Writes fail cleanly while the index is down (503, nothing stored), reads of the index
    too; once it is back every node serves and takes writes again, without a restart."""
    from tests.support.postgres import start_postgres
    from tests.support.topology import restart_postgres
    pg = start_postgres(artifacts_dir / "logs")
    bucket = s3_store.create_bucket("pg-restart")
    t = topology(tmp_path / "t", artifacts_dir / "logs", pg.create_database("restart"),
                 s3_store, bucket)
    try:
        t.start_nodes(2)
        files = [make_file(tmp_path / f"r{i}.dcm", study="PGR", series="PGRS", sop=f"R{i}")
                 for i in range(4)]
        study = uid("study", "PGR")
        assert _stow(t.nodes[0].url, files[:2]).status_code == 200
        pids = [n.proc.pid for n in t.nodes]
        seen: dict[str, object] = {}

        def while_down() -> None:
            r = _stow(t.nodes[1].url, files[2:], timeout=30)
            seen["stow"] = (r.status_code, r.headers.get("Retry-After"))
            ready = requests.get(f"{t.nodes[0].url}/readyz", timeout=30)
            seen["readyz"] = (ready.status_code, ready.json().get("reason", ""))

        restart_postgres(pg, artifacts_dir / "logs", while_down=while_down)
        assert seen["stow"][0] == 503 and seen["stow"][1], seen
        assert seen["readyz"][0] == 503 and "index" in seen["readyz"][1], seen
        for node in t.nodes:  # nothing of the failed STOW, the first one whole
            assert _count(node.url, study) == 2
            assert requests.get(f"{node.url}/readyz", timeout=30).status_code == 200
        assert _stow(t.nodes[1].url, files[2:]).status_code == 200  # the retry
        assert all(_count(n.url, study) == 4 for n in t.nodes)
        assert [n.proc.pid for n in t.nodes] == pids and all(
            n.proc.popen.poll() is None for n in t.nodes)  # no node restarted
    finally:
        t.stop()
        pg.stop()
