"""STOW-RS against the gateway under gunicorn (PS3.18 10.5): status codes, FailureReasons,
quoted and bare boundaries, chunked bodies, and after every request the archive holds
exactly what it should (instances, files, no temp files left behind)."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pydicom
import pytest
import requests

from gateway.dicomweb import multipart
from tests.support.dicomfiles import make_file, uid
from tests.support.procs import GatewayServer, start_gateway
from tests.support.teststore import stored_objects

DICOM_CT = 'multipart/related; type="application/dicom"; boundary={b}'


@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    import shutil
    data = tmp_path_factory.mktemp("stow") / "data"
    shutil.copytree(loaded_data_dir, data)
    srv = start_gateway(data, artifacts_dir / "logs",
                        env={"GATEWAY_MAX_UPLOAD_BYTES": str(3 * 1024 * 1024)})
    yield srv
    srv.stop()


class State:
    """What the archive holds, seen from outside: QIDO counts and files on disk."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    def instances(self) -> int:
        r = requests.get(f"{self.server.url}/dicomweb/instances", params={"limit": 5000})
        return len(r.json())

    def files(self) -> int:
        return stored_objects(self.server.data_dir)  # files, or objects (GATEWAY_TEST_STORE)

    def temp_files(self) -> list[Path]:
        return list((self.server.data_dir / "tmp").glob("*"))

    def snapshot(self) -> tuple[int, int]:
        return self.instances(), self.files()


@pytest.fixture
def state(server: GatewayServer) -> State:
    return State(server)


def dicom_bytes(tmp_path: Path, name: str, **kw) -> bytes:
    return make_file(tmp_path / f"{name}.dcm", **kw).read_bytes()


def post(server: GatewayServer, parts: list[bytes], *, study: str | None = None,
         boundary: str = "b0undary", content_type: str | None = None,
         part_type: str = "application/dicom", chunked: bool = False) -> requests.Response:
    body = multipart.encode([(part_type, p) for p in parts], boundary)
    url = f"{server.url}/dicomweb/studies" + (f"/{study}" if study else "")
    headers = {"Content-Type": content_type or DICOM_CT.format(b=boundary),
               "Accept": "application/dicom+json"}
    data = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    return requests.post(url, data=data, headers=headers, timeout=60)


def seq(response: requests.Response, tag: str) -> list[dict]:
    return orjson.loads(response.content).get(tag, {}).get("Value", [])


def test_good_instances_are_stored_with_retrieve_urls(server, state, tmp_path) -> None:
    before = state.snapshot()
    parts = [dicom_bytes(tmp_path, f"g{n}", patient="STOW-GOOD", study="good", series="good-se",
                         sop=f"good-{n}", InstanceNumber=n) for n in (1, 2)]
    r = post(server, parts)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/dicom+json"
    refs = seq(r, "00081199")
    assert len(refs) == 2 and not seq(r, "00081198")
    study = uid("study", "good")
    study_url = f"{server.url}/dicomweb/studies/{study}"
    assert orjson.loads(r.content)["00081190"]["Value"] == [study_url]
    assert refs[0]["00081190"]["Value"][0].startswith(study_url + "/series/")
    assert state.snapshot() == (before[0] + 2, before[1] + 2) and not state.temp_files()
    back = requests.get(refs[0]["00081190"]["Value"][0],
                        headers={"Accept": "multipart/related; type=application/dicom; "
                                           "transfer-syntax=*"})
    assert parts[0] in back.content


def test_identical_duplicate_is_success_and_changes_nothing(server, state, tmp_path) -> None:
    part = dicom_bytes(tmp_path, "d", patient="STOW-DUP", study="dup", sop="dup-1")
    assert post(server, [part]).status_code == 200
    before = state.snapshot()
    r = post(server, [part])
    assert r.status_code == 200 and len(seq(r, "00081199")) == 1
    assert state.snapshot() == before and not state.temp_files()


def test_same_uid_different_content_is_refused_with_0111(server, state, tmp_path) -> None:
    first = dicom_bytes(tmp_path, "c1", patient="STOW-CONFLICT", study="conf", sop="conf-1")
    assert post(server, [first]).status_code == 200
    before = state.snapshot()
    other = dicom_bytes(tmp_path, "c2", patient="STOW-CONFLICT", study="conf", sop="conf-1",
                        StudyDescription="changed")
    r = post(server, [other])
    assert r.status_code == 409
    [failed] = seq(r, "00081198")
    assert failed["00081197"]["Value"] == [0x0111]
    assert failed["00081155"]["Value"] == [uid("sop", "conf-1")]
    assert state.snapshot() == before and not state.temp_files()


def test_corrupt_part_fails_alone_with_c000(server, state, tmp_path) -> None:
    before = state.snapshot()
    good = dicom_bytes(tmp_path, "m", patient="STOW-MIXED", study="mixed", sop="mixed-1")
    r = post(server, [good, b"DICM? no, just some bytes" * 100])
    assert r.status_code == 202
    assert len(seq(r, "00081199")) == 1
    assert [f["00081197"]["Value"] for f in seq(r, "00081198")] == [[0xC000]]
    assert "Warning" in r.headers
    assert state.snapshot() == (before[0] + 1, before[1] + 1) and not state.temp_files()


def test_only_failures_is_409(server, state, tmp_path) -> None:
    before = state.snapshot()
    ds = pydicom.dcmread(make_file(tmp_path / "nouid.dcm", sop="nouid"))
    del ds.StudyInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    r = post(server, [buf.getvalue(), b"\x00" * 10])
    assert r.status_code == 409
    assert [f["00081197"]["Value"] for f in seq(r, "00081198")] == [[0xC000], [0xC000]]
    assert state.snapshot() == before and not state.temp_files()


def test_sop_class_mismatch_is_a900(server, state, tmp_path) -> None:
    ds = pydicom.dcmread(make_file(tmp_path / "cls.dcm", sop="cls-1"))
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    buf = io.BytesIO()
    ds.save_as(buf)
    before = state.snapshot()
    r = post(server, [buf.getvalue()])
    assert r.status_code == 409 and seq(r, "00081198")[0]["00081197"]["Value"] == [0xA900]
    assert state.snapshot() == before


def test_wrong_study_in_url_is_a901_and_nothing_is_stored(server, state, tmp_path) -> None:
    before = state.snapshot()
    part = dicom_bytes(tmp_path, "ws", patient="STOW-WS", study="actual", sop="ws-1")
    r = post(server, [part], study=uid("study", "another"))
    assert r.status_code == 409
    assert seq(r, "00081198")[0]["00081197"]["Value"] == [0xA901]
    assert state.snapshot() == before and not state.temp_files()
    r = post(server, [part], study=uid("study", "actual"))
    assert r.status_code == 200


@pytest.mark.parametrize("content_type", [
    "application/dicom",
    'multipart/related; type="application/dicom+json"; boundary=b0undary',
    "text/plain",
    None,
])
def test_wrong_content_type_is_415(server, state, tmp_path, content_type) -> None:
    before = state.snapshot()
    part = dicom_bytes(tmp_path, "ct", patient="STOW-CT", study="ct415", sop="ct-1")
    body = multipart.encode([("application/dicom", part)], "b0undary")
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(f"{server.url}/dicomweb/studies", data=body, headers=headers)
    assert r.status_code == 415 and "application/dicom" in r.json()["message"]
    assert state.snapshot() == before


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_413_and_stores_nothing(server, state, tmp_path, chunked) -> None:
    before = state.snapshot()
    parts = [dicom_bytes(tmp_path, f"big{n}", patient="STOW-BIG", study="big", sop=f"big-{n}",
                         size=700) for n in range(4)]  # ~3.9 MB > the 3 MiB limit
    r = post(server, parts, chunked=chunked)
    assert r.status_code == 413 and "MAX_UPLOAD_BYTES" in r.json()["message"]
    assert state.snapshot() == before and not state.temp_files()


def test_malformed_multipart_is_400(server, state) -> None:
    before = state.snapshot()
    r = requests.post(f"{server.url}/dicomweb/studies", data=b"--b0undary\r\nContent-Type: "
                      b"application/dicom\r\n\r\nno closing boundary",
                      headers={"Content-Type": DICOM_CT.format(b="b0undary")})
    assert r.status_code == 400 and "multipart" in r.json()["message"]
    assert state.snapshot() == before and not state.temp_files()


@pytest.mark.parametrize("spelling", ['boundary="{b}"', "boundary={b}"])
def test_quoted_and_bare_boundaries_chunked_or_not(server, state, tmp_path, spelling) -> None:
    for chunked in (False, True):
        name = f"q{len(spelling)}{chunked}"
        part = dicom_bytes(tmp_path, name, patient="STOW-Q", study="q", sop=name)
        ctype = 'multipart/related; type="application/dicom"; ' + spelling.format(b="x-y-z")
        r = post(server, [part], boundary="x-y-z", content_type=ctype, chunked=chunked)
        assert r.status_code == 200, r.text


def test_part_of_another_type_fails_alone(server, state, tmp_path) -> None:
    good = dicom_bytes(tmp_path, "pt", patient="STOW-PT", study="pt", sop="pt-1")
    body = multipart.encode([("application/dicom", good), ("application/pdf", b"%PDF-1.4")], "bb")
    r = requests.post(f"{server.url}/dicomweb/studies", data=body,
                      headers={"Content-Type": DICOM_CT.format(b="bb")})
    assert r.status_code == 202
    assert seq(r, "00081198")[0]["00081197"]["Value"] == [0xC000]
    assert "application/pdf" in r.headers["Warning"]
