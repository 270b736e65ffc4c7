"""HTTP limits under real gunicorn, from clients that misbehave on the wire: slow and
stalled bodies, truncated bodies, malformed chunked framing, oversized request lines,
headers and bodies. Each gets a precise status in its face's form (DICOMweb JSON, FHIR
OperationOutcome), nothing is stored, and the clients that behave are served meanwhile."""
from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import requests

from gateway.dicomweb import multipart
from tests.support.dicomfiles import make_file
from tests.support.procs import GatewayServer, start_gateway

BOUNDARY = "b0undary"
CTYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
LIMITS = {"GATEWAY_MAX_UPLOAD_BYTES": str(3 << 20), "GATEWAY_BODY_IDLE_TIMEOUT": "2",
          "GATEWAY_BODY_MIN_RATE": "65536", "GATEWAY_UPLOAD_WAIT": "0.5",
          "GATEWAY_STOW_MAX_PARTS": "3", "GATEWAY_STOW_PART_HEADER_BYTES": "1024"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("limits") / "data"
    shutil.copytree(loaded_data_dir, data)
    srv = start_gateway(data, artifacts_dir / "logs", workers=2, env=LIMITS)
    yield srv
    srv.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after the answer

    def json(self) -> dict:
        return orjson.loads(self.body)


def read_answer(sock: socket.socket, timeout: float = 15) -> Answer:
    """One HTTP/1.1 response off a raw socket, then whether the server closed."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a response: {buf!r}")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            break
        body += data
    try:
        sock.settimeout(5)
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        closed = False
    return Answer(int(lines[0].split()[1]), headers, body, closed)


def connect(server: GatewayServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def stow_head(length: int | None, path: str = "/dicomweb/studies") -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: {CTYPE}\r\n"
            f"Accept: application/dicom+json\r\n{framing}\r\n\r\n").encode()


def instance(tmp_path: Path, name: str) -> bytes:
    return make_file(tmp_path / f"{name}.dcm", patient="LIMITS", study=f"lim-{name}",
                     sop=f"lim-{name}").read_bytes()


def stored(server: GatewayServer) -> tuple[int, int, int]:
    """Instances the archive answers for, files on disk, leftover temp files."""
    found = requests.get(f"{server.url}/dicomweb/instances", params={"limit": 5000}).json()
    return (len(found), sum(1 for _ in (server.data_dir / "files").rglob("*.dcm")),
            sum(1 for _ in (server.data_dir / "tmp").glob("*")))


def assert_dicomweb_error(answer: Answer, status: int, words: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["status"] == status and words in answer.json()["message"], answer.body


# ------------------------------------------------------------ slow clients
def test_slow_bodies_time_out_while_the_rest_are_served(server, tmp_path) -> None:
    before = stored(server)
    body = multipart.encode([("application/dicom", instance(tmp_path, "slow"))], BOUNDARY)
    socks = [connect(server) for _ in range(40)]
    for sock in socks:
        sock.sendall(stow_head(len(body) + 100_000) + body[:300])
    stop = threading.Event()

    def trickle() -> None:  # half of them send a byte now and then, far below the rate
        while not stop.wait(0.3):
            for sock in socks[::2]:
                try:
                    sock.send(b"x")
                except OSError:
                    pass

    threading.Thread(target=trickle, daemon=True).start()
    try:
        time.sleep(1)
        for _ in range(5):  # served meanwhile, without waiting for the slow ones
            assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
            assert requests.get(f"{server.url}/dicomweb/studies", timeout=5).status_code == 200
        answers = [read_answer(sock) for sock in socks]
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    statuses = sorted(a.status for a in answers)
    assert set(statuses) <= {408, 503}, statuses
    assert statuses.count(408) >= 2, statuses  # the ones holding the upload slots
    for answer in answers:
        assert answer.closed and answer.json()["status"] == answer.status
        if answer.status == 503:
            assert answer.headers["retry-after"] == "1" and "UPLOAD_SLOTS" in answer.json()["message"]
    assert stored(server) == before


def test_stalled_body_is_408_and_stores_nothing(server, tmp_path) -> None:
    before = stored(server)
    body = multipart.encode([("application/dicom", instance(tmp_path, "stall"))], BOUNDARY)
    with connect(server) as sock:
        sock.sendall(stow_head(len(body)) + body[:-10])
        answer = read_answer(sock)
    assert_dicomweb_error(answer, 408, "BODY_IDLE_TIMEOUT")
    assert answer.closed and stored(server) == before


def test_body_below_the_minimum_rate_is_408(server, tmp_path) -> None:
    before = stored(server)
    body = multipart.encode([("application/dicom", instance(tmp_path, "crawl"))], BOUNDARY)
    with connect(server) as sock:
        sock.sendall(stow_head(len(body)) + body[:100])
        for byte in body[100:140]:  # 10 bytes/s: never idle for 2 s, far below 64 KiB/s
            time.sleep(0.1)
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
        answer = read_answer(sock)
    assert_dicomweb_error(answer, 408, "BODY_MIN_RATE")
    assert stored(server) == before


def test_idle_http10_clients_do_not_stall_the_worker(server) -> None:
    """Clients that never close after a `Connection: close` answer: gunicorn lingers for
    them, which must not block the worker's event loop."""
    socks = [connect(server) for _ in range(12)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
        for _ in range(3):
            assert requests.get(f"{server.url}/healthz", timeout=3).status_code == 200
    finally:
        for sock in socks:
            sock.close()


# ------------------------------------------------------- truncated, malformed
def test_body_shorter_than_content_length_stores_nothing_even_when_complete(server, tmp_path) -> None:
    before = stored(server)
    body = multipart.encode([("application/dicom", instance(tmp_path, "short"))], BOUNDARY)
    with connect(server) as sock:  # the closing boundary arrives, then the client is gone
        sock.sendall(stow_head(len(body) + 50) + body)
        sock.shutdown(socket.SHUT_WR)
        answer = read_answer(sock)
    assert_dicomweb_error(answer, 400, "Content-Length")
    assert stored(server) == before


@pytest.mark.parametrize("framing", [b"zz\r\n", b"-5\r\n", b"10;=x\r\n", b"4\r\nabcdef"])
def test_malformed_chunked_framing_is_400_json(server, tmp_path, framing) -> None:
    before = stored(server)
    body = multipart.encode([("application/dicom", instance(tmp_path, "chunk"))], BOUNDARY)
    with connect(server) as sock:
        sock.sendall(stow_head(None) + b"%x\r\n" % len(body[:200]) + body[:200] + b"\r\n" + framing)
        answer = read_answer(sock)
    assert_dicomweb_error(answer, 400, "chunk")
    assert answer.closed and stored(server) == before


def test_content_length_over_the_limit_is_413_before_the_body_then_closed(server) -> None:
    before = stored(server)
    with connect(server) as sock:  # the body is never sent: the answer must not wait for it
        sock.sendall(stow_head((3 << 20) + 1))
        answer = read_answer(sock, timeout=1.5)
    assert_dicomweb_error(answer, 413, "MAX_UPLOAD_BYTES")
    assert answer.headers["connection"] == "close" and answer.closed
    assert stored(server) == before


def test_more_parts_than_stow_max_parts_is_413(server, tmp_path) -> None:
    before = stored(server)
    parts = [("application/dicom", instance(tmp_path, f"many{n}")) for n in range(4)]
    r = requests.post(f"{server.url}/dicomweb/studies", data=multipart.encode(parts, BOUNDARY),
                      headers={"Content-Type": CTYPE})
    assert r.status_code == 413 and "STOW_MAX_PARTS (3)" in r.json()["message"]
    three = requests.post(f"{server.url}/dicomweb/studies", headers={"Content-Type": CTYPE},
                          data=multipart.encode(parts[:3], BOUNDARY))
    assert three.status_code == 200 and stored(server)[0] == before[0] + 3


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_part_header_limit_holds_however_the_bytes_arrive(server, tmp_path, piece) -> None:
    before = stored(server)
    long_header = b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\nX-Pad: " + \
        b"p" * 1100 + b"\r\n\r\n" + instance(tmp_path, f"hdr{piece}") + multipart.closing(BOUNDARY)
    chunks = (long_header[i:i + piece] for i in range(0, len(long_header), piece))
    r = requests.post(f"{server.url}/dicomweb/studies", data=chunks,
                      headers={"Content-Type": CTYPE})
    assert r.status_code == 400 and "1024 bytes" in r.json()["message"]
    assert stored(server) == before


# ---------------------------------------------- request lines and headers
def long_uid_list(n: int) -> list[str]:
    return [f"1.2.826.0.1.3680043.8.498.{10**30 + k}" for k in range(n)]


def test_qido_with_a_16_kib_uid_list_is_served(server) -> None:
    from dicomweb_client import DICOMwebClient
    client = DICOMwebClient(f"{server.url}/dicomweb")
    known = [s["0020000D"]["Value"][0] for s in client.search_for_studies()][:2]
    uids = long_uid_list(300) + known
    assert len(",".join(uids)) > 16 * 1024
    found = client.search_for_studies(search_filters={"StudyInstanceUID": ",".join(uids)})
    assert sorted(s["0020000D"]["Value"][0] for s in found) == sorted(known)


@pytest.mark.parametrize("path", ["/dicomweb/studies", "/wado", "/fhir/Patient", "/healthz"])
def test_request_line_over_the_limit_is_414_in_the_face_form(server, path) -> None:
    target = f"{path}?StudyInstanceUID=" + ",".join(long_uid_list(700))  # ~40 KiB
    with connect(server) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        answer = read_answer(sock)
    assert answer.status == 414 and answer.closed
    assert_face_form(answer, path, "REQUEST_LINE_BYTES")


@pytest.mark.parametrize("path", ["/dicomweb/studies", "/fhir/Patient"])
def test_header_over_the_limit_is_431_in_the_face_form(server, path) -> None:
    with connect(server) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\nX-Big: {'h' * 9000}\r\n\r\n".encode())
        answer = read_answer(sock)
    assert answer.status == 431
    assert_face_form(answer, path, "header")


def assert_face_form(answer: Answer, path: str, words: str) -> None:
    doc = answer.json()
    if path.startswith("/fhir"):
        assert answer.headers["content-type"].startswith("application/fhir+json")
        assert doc["resourceType"] == "OperationOutcome"
        assert words in doc["issue"][0]["diagnostics"] and doc["issue"][0]["code"] == "too-long"
    else:
        assert answer.headers["content-type"] == "application/json"
        assert doc["status"] == answer.status and words in doc["message"]
        if path.startswith(("/dicomweb", "/wado")):
            assert words in answer.headers["warning"]


def test_fhir_post_search_takes_a_long_form(server) -> None:
    bundle = requests.get(f"{server.url}/fhir/Patient", params={"_count": 2}).json()
    known = [e["resource"]["id"] for e in bundle["entry"]]
    ids = [f"nobody-{k:05d}-{'x' * 40}" for k in range(800)] + known  # ~40 KiB of form
    r = requests.post(f"{server.url}/fhir/Patient/_search", data={"_id": ",".join(ids)},
                      headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["resourceType"] == "Bundle" and found["type"] == "searchset"
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(known)
    assert found["total"] == 2


def test_fhirpy_search_with_a_20_kib_url_is_served(server) -> None:
    from fhirpy import SyncFHIRClient
    client = SyncFHIRClient(f"{server.url}/fhir")
    known = [p.id for p in client.resources("Patient").limit(2).fetch()]
    ids = [f"nobody-{k:05d}-{'x' * 40}" for k in range(400)] + known
    assert len(",".join(ids)) > 20 * 1024
    found = client.resources("Patient").search(_id=",".join(ids)).fetch_all()
    assert sorted(p.id for p in found) == sorted(known)
