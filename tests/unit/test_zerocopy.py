"""Zero-copy bodies (gateway/dicomweb/zerocopy.py) driven by gunicorn's own HTTP/1.x
response object over a socket pair, as its gthread and sync workers drive them: exact
bytes, Content-Length, gunicorn's byte count, keep-alive, HEAD, and the generator
fallback wherever sendfile would not be safe. Fails if gunicorn changes underneath."""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from gunicorn.config import Config
from gunicorn.http.wsgi import Response as GunicornResponse

from gateway.dicomweb import multipart, zerocopy
from gateway.dicomweb.zerocopy import FilePart, FilesResponse


class Req:
    """What gunicorn's Response reads from its request."""

    def __init__(self, method: str = "GET", version: tuple[int, int] = (1, 1)) -> None:
        self.method, self.version = method, version

    def should_close(self) -> bool:
        return False


@pytest.fixture
def files(tmp_path: Path) -> list[FilePart]:
    out = []
    for n, size in enumerate((300_000, 0, 70_001)):
        path = tmp_path / f"f{n}.dcm"
        path.write_bytes(bytes((n * 7 + i) % 251 for i in range(size)))
        out.append(FilePart(path, size))
    return out


def body_of(files: list[FilePart], boundary: str = "bnd") -> list:
    return multipart.segments((("application/dicom", f) for f in files), boundary)


def expected(files: list[FilePart], boundary: str = "bnd") -> bytes:
    return multipart.encode([("application/dicom", f.path.read_bytes()) for f in files],
                            boundary)


def serve(response: FilesResponse, *, method: str = "GET", protocol: str = "HTTP/1.1",
          wrap: Callable | None = None,
          timeout: float | None = None) -> tuple[bytes, dict[str, str], bytes, object]:
    """One request the way gunicorn's worker serves it; returns (status line, headers,
    body, gunicorn's response)."""
    ours, theirs = socket.socketpair()
    ours.settimeout(timeout)
    received = bytearray()
    reader = threading.Thread(target=lambda: _drain(theirs, received))
    reader.start()
    version = (1, 0) if protocol == "HTTP/1.0" else (1, 1)
    resp = GunicornResponse(Req(method, version), ours, Config())
    environ = {"REQUEST_METHOD": method, "SERVER_PROTOCOL": protocol, "gunicorn.socket": ours,
               "wsgi.url_scheme": "http", "SERVER_NAME": "x", "SERVER_PORT": "80"}
    start = wrap(resp.start_response) if wrap else resp.start_response
    try:
        for item in response(environ, start):
            resp.write(item)
        resp.close()
    finally:  # as gunicorn does when a body raises: the connection is closed
        ours.close()
        reader.join()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0].encode(), headers, body, resp


def _drain(sock: socket.socket, into: bytearray) -> None:
    while data := sock.recv(1 << 16):
        into += data
    sock.close()


@pytest.fixture
def sendfile_calls(monkeypatch) -> list[FilePart]:
    calls: list[FilePart] = []
    real = zerocopy._sendfile

    def counting(sock, part):
        calls.append(part)
        return real(sock, part)
    monkeypatch.setattr(zerocopy, "_sendfile", counting)
    return calls


def test_gunicorn_http11_sends_files_with_sendfile(files, sendfile_calls) -> None:
    status, headers, body, resp = serve(FilesResponse(body_of(files)))
    assert status == b"HTTP/1.1 200 OK" and body == expected(files)
    assert int(headers["Content-Length"]) == len(body) == resp.sent  # gunicorn's count
    assert headers["Connection"] == "keep-alive" and "Transfer-Encoding" not in headers
    assert sendfile_calls == files


def test_a_socket_with_a_timeout_gets_the_same_bytes(files, sendfile_calls) -> None:
    _status, _headers, body, resp = serve(FilesResponse(body_of(files)), timeout=5.0)
    assert body == expected(files) and resp.sent == len(body) and sendfile_calls == files


def test_a_single_file_body(files, sendfile_calls) -> None:
    _status, headers, body, resp = serve(FilesResponse([files[0]]))
    assert body == files[0].path.read_bytes() == body[:resp.sent]
    assert int(headers["Content-Length"]) == files[0].length and sendfile_calls == [files[0]]


def test_head_sends_the_length_and_no_body(files, sendfile_calls) -> None:
    _status, headers, body, _resp = serve(FilesResponse(body_of(files)), method="HEAD")
    assert body == b"" and int(headers["Content-Length"]) == len(expected(files))
    assert sendfile_calls == []


@pytest.mark.parametrize("case", ["http2", "middleware"])
def test_generator_wherever_sendfile_is_not_certain(files, sendfile_calls, case) -> None:
    """HTTP/2 frames its own body; a middleware may buffer: both get plain chunks."""
    kw: dict = {"http2": {"protocol": "HTTP/2.0"},
                "middleware": {"wrap": lambda start: (lambda *a: start(*a))}}[case]
    _status, _headers, body, resp = serve(FilesResponse(body_of(files)), **kw)
    assert body == expected(files) and resp.sent == len(body) and sendfile_calls == []


def test_http10_clients_get_sendfile_too(files, sendfile_calls) -> None:
    status, _headers, body, _resp = serve(FilesResponse(body_of(files)), protocol="HTTP/1.0")
    assert status == b"HTTP/1.0 200 OK" and body == expected(files) and sendfile_calls == files


def test_not_under_gunicorn_the_same_bytes(files) -> None:
    from flask import Flask
    app = Flask(__name__)
    app.add_url_rule("/x", "x", lambda: FilesResponse(body_of(files)))
    r = app.test_client().get("/x")
    assert r.data == expected(files) and int(r.headers["Content-Length"]) == len(r.data)


def test_a_short_file_cuts_the_response_instead_of_misframing_it(files) -> None:
    lying = [FilePart(files[0].path, files[0].length + 10), files[2]]
    with pytest.raises(OSError, match="ended after"):
        serve(FilesResponse(body_of(lying)))
    with pytest.raises(OSError, match="short"):
        b"".join(zerocopy.chunks(body_of(lying)))
