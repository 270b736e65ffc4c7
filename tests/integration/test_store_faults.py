"""The store under real faults, against gunicorn: a full disk (a small tmpfs as DATA_DIR), a
read-only index (a read-only bind mount), a stored file deleted or damaged, and SIGKILL of the
server in the middle of STOWs. After each: a clear answer in STOW's own form, nothing
half-written, and ``tcia-gateway check`` agrees."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import orjson
import pydicom
import requests

from gateway.archive.local import LocalArchive, open_local
from gateway.config import Settings
from gateway.dicomweb import multipart
from tests.support.dicomfiles import make_file
from tests.support.mounts import fill, read_only, tmpfs
from tests.support.procs import GatewayServer, start_gateway, wait_until
from tests.support.store import run_check

CT = 'multipart/related; type="application/dicom"; boundary=faults'


def stow(server: GatewayServer, parts: list[bytes]) -> requests.Response:
    body = multipart.encode([("application/dicom", p) for p in parts], "faults")
    return requests.post(f"{server.url}/dicomweb/studies", data=body, timeout=60,
                         headers={"Content-Type": CT, "Accept": "application/dicom+json"})


def instance(tmp_path: Path, name: str, size: int = 8) -> bytes:
    return make_file(tmp_path / f"{name}.dcm", patient="FAULTS", study="faults",
                     series="faults-se", sop=name, size=size).read_bytes()


def reasons(response: requests.Response) -> list[int]:
    failed = orjson.loads(response.content).get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in failed]


def stored(data: Path) -> list[Path]:
    return sorted((data / "files").rglob("*.dcm"))


def parts(data: Path) -> list[Path]:
    return sorted((data / "tmp").glob("*.part"))


def indexed(server: GatewayServer) -> int:
    r = requests.get(f"{server.url}/dicomweb/instances", timeout=30)
    assert r.status_code == 200, r.text
    return len(r.json())


def wado(server: GatewayServer, data: bytes) -> requests.Response:
    ds = pydicom.dcmread(__import__("io").BytesIO(data), stop_before_pixels=True)
    return requests.get(f"{server.url}/wado", timeout=30, params={
        "requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID, "contentType": "application/dicom"})


# ------------------------------------------------------------------ disk full
def test_disk_full_answers_0xA700_or_507_and_writes_nothing(tmp_path, artifacts_dir) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        data = disk / "data"
        server = start_gateway(data, artifacts_dir / "logs", workers=1)
        try:
            assert stow(server, [instance(tmp_path, "first")]).status_code == 200
            filler = fill(disk, leave=8192)  # room for a small part, not for the index write
            r = stow(server, [instance(tmp_path, "small")])
            assert r.status_code == 409, r.text
            assert reasons(r) == [0xA700]  # Out of Resources, per instance (PS3.4 B.2.3)
            assert "disk is full" in r.headers["Warning"]
            assert (len(stored(data)), parts(data), indexed(server)) == (1, [], 1)

            r = stow(server, [instance(tmp_path, "large", size=256)])  # 128 KiB: cannot spool
            assert r.status_code == 507, r.text
            body = r.json()
            assert "no space left" in body["message"].lower() and str(data / "tmp") in body["message"]
            assert (len(stored(data)), parts(data), indexed(server)) == (1, [], 1)

            filler.unlink()
            r = stow(server, [instance(tmp_path, "small"), instance(tmp_path, "large", size=256)])
            assert r.status_code == 200, r.text
            assert (len(stored(data)), parts(data), indexed(server)) == (3, [], 3)
            report = run_check(data)
            assert report.returncode == 0 and "0 problems" in report.stdout, report.stdout
        finally:
            server.stop()


# -------------------------------------------------------------- index read-only
def test_read_only_index_is_not_ready_and_stow_says_why(tmp_path, artifacts_dir) -> None:
    data, idx = tmp_path / "data", tmp_path / "idx"
    idx.mkdir()
    url = f"sqlite:///{idx / 'index.sqlite'}"
    archive = LocalArchive(data, url)
    assert archive.store(make_file(tmp_path / "one.dcm", sop="ro-one")).ok
    archive.index.engine.dispose()
    # A reader that keeps the WAL files in place: the index stays readable, not writable.
    holder = sqlite3.connect(idx / "index.sqlite")
    holder.execute("SELECT count(*) FROM instances").fetchone()
    env = {"GATEWAY_DATABASE_URL": url}
    try:
        with read_only(idx):
            server = start_gateway(data, artifacts_dir / "logs", workers=1, env=env)
            try:
                r = requests.get(server.url + "/readyz", timeout=10)
                assert r.status_code == 503, r.text
                assert r.json()["reason"] == (f"index database not writable: "
                                              f"{idx / 'index.sqlite'} is read-only")
                assert indexed(server) == 1  # reads go on
                r = stow(server, [instance(tmp_path, "ro-two")])
                assert r.status_code == 503, r.text
                assert "readonly database" in r.json()["message"]
                assert (len(stored(data)), parts(data)) == (1, [])
            finally:
                server.stop()
    finally:
        holder.close()
    server = start_gateway(data, artifacts_dir / "logs", workers=1, env=env)
    try:
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
        assert stow(server, [instance(tmp_path, "ro-two")]).status_code == 200
        assert (len(stored(data)), indexed(server)) == (2, 2)
    finally:
        server.stop()


# -------------------------------------------------- stored file missing / damaged
def test_sending_the_original_again_restores_a_missing_or_damaged_file(tmp_path,
                                                                      artifacts_dir) -> None:
    data = tmp_path / "data"
    server = start_gateway(data, artifacts_dir / "logs", workers=2)
    try:
        gone, damaged = instance(tmp_path, "gone"), instance(tmp_path, "damaged")
        assert stow(server, [gone, damaged]).status_code == 200
        by_name = {p.read_bytes(): p for p in stored(data)}
        by_name[gone].unlink()
        flipped = bytearray(damaged)
        flipped[-3] ^= 0x40  # a flipped bit in the pixel data: same size, other bytes
        by_name[damaged].write_bytes(flipped)

        report = run_check(data)
        assert report.returncode == 1
        lines = report.stdout.splitlines()
        assert any(l.startswith("missing ") and by_name[gone].name in l for l in lines)
        assert any(l.startswith("corrupt ") and by_name[damaged].name in l for l in lines)

        r = stow(server, [gone, damaged])  # identical bytes: success, and the files are whole
        assert r.status_code == 200, r.text
        assert by_name[gone].read_bytes() == gone and by_name[damaged].read_bytes() == damaged
        for original in (gone, damaged):
            r = wado(server, original)
            assert r.status_code == 200 and r.content == original
        assert len(stored(data)) == 2 and parts(data) == []
        report = run_check(data)
        assert report.returncode == 0 and "0 problems" in report.stdout, report.stdout
    finally:
        server.stop()


# ------------------------------------------------------------- crash leftovers
def test_start_up_sweeps_only_old_parts_nobody_writes(tmp_path) -> None:
    settings = Settings().replace(data_dir=tmp_path / "data", temp_max_age=600)
    tmp = settings.data_dir / "tmp"
    tmp.mkdir(parents=True)
    old, fresh, writing = tmp / "old.part", tmp / "fresh.part", tmp / "writing.part"
    for p in (old, fresh, writing):
        p.write_bytes(b"x" * 1000)
    an_hour_ago = time.time() - 3600
    for p in (old, writing):
        os.utime(p, (an_hour_ago, an_hour_ago))
    with open(writing, "rb") as held:  # a live writer that stalled: it holds its part's lock
        fcntl.flock(held, fcntl.LOCK_EX)
        open_local(settings)
        assert sorted(p.name for p in tmp.iterdir()) == ["fresh.part", "writing.part"]
        report = run_check(settings.data_dir, env={"GATEWAY_TEMP_MAX_AGE": "600"})
        assert "0 problems" in report.stdout and "2 temp files in flight" in report.stdout


def test_sigkill_mid_stow_then_restart_loses_nothing_acknowledged(tmp_path,
                                                                  artifacts_dir) -> None:
    data = tmp_path / "data"
    server = start_gateway(data, artifacts_dir / "logs", workers=2)
    acked: list[bytes] = []
    stop, release = threading.Event(), threading.Event()

    def hammer(client: int) -> None:
        n = 0
        while not stop.is_set():
            body = instance(tmp_path, f"kill-{client}-{n}", size=64)
            n += 1
            try:
                if stow(server, [body]).status_code == 200:
                    acked.append(body)
            except requests.RequestException:
                return

    def stalled() -> None:  # half a part, then nothing until the server is gone
        big = instance(tmp_path, "kill-stalled", size=512)
        body = multipart.encode([("application/dicom", big)], "faults")

        def chunks():
            yield body[: len(body) // 2]
            release.wait(30)
        try:
            requests.post(f"{server.url}/dicomweb/studies", data=chunks(), timeout=30,
                          headers={"Content-Type": CT})
        except requests.RequestException:
            pass

    threads = [threading.Thread(target=hammer, args=(c,)) for c in range(4)]
    threads.append(threading.Thread(target=stalled))
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 8 and parts(data), timeout=60, what="STOWs in flight")
        server.proc.kill()  # SIGKILL, the whole process group, mid-request
    finally:
        stop.set()
        release.set()
        for t in threads:
            t.join(60)
    assert parts(data)  # the crash left its temp files
    server = start_gateway(data, artifacts_dir / "logs", workers=2,
                           env={"GATEWAY_TEMP_MAX_AGE": "0"})  # nothing else writes here
    try:
        assert parts(data) == []  # swept at start-up
        for body in acked:  # every acknowledged instance is there, whole
            r = wado(server, body)
            assert r.status_code == 200 and r.content == body
        report = run_check(data, "--repair")
        print(report.stdout)
        problems = [l for l in report.stdout.splitlines() if " -> " in l]
        assert report.returncode == 0, report.stdout
        assert all(l.split()[0] in ("orphan", "leftover") and "-> repaired" in l
                   for l in problems), problems
        report = run_check(data)
        assert report.returncode == 0 and "0 problems" in report.stdout, report.stdout
    finally:
        server.stop()


def test_read_only_postgresql_index_is_not_ready_and_stow_says_why(postgres, tmp_path,
                                                                   artifacts_dir) -> None:
    import psycopg
    name = "ro" + uuid.uuid4().hex[:10]
    url = postgres.create_database(name)

    def set_read_only(on: bool) -> None:  # as after a fail-over to a standby, for new sessions
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                         f'{"on" if on else "off"}')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    data = tmp_path / "data"
    server = start_gateway(data, artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_DATABASE_URL": url})
    try:
        assert stow(server, [instance(tmp_path, "pg-one")]).status_code == 200
        set_read_only(True)
        r = requests.get(server.url + "/readyz", timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["reason"] == "index database not writable: the PostgreSQL session is read-only"
        assert indexed(server) == 1
        r = stow(server, [instance(tmp_path, "pg-two")])
        assert r.status_code == 503, r.text
        assert "read-only transaction" in r.json()["message"]
        assert (len(stored(data)), parts(data)) == (1, [])
        set_read_only(False)
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
        assert stow(server, [instance(tmp_path, "pg-two")]).status_code == 200
        assert (len(stored(data)), indexed(server)) == (2, 2)
    finally:
        server.stop()
