"""A stored file that is missing, shrunk, or goes away while it is being sent, under the real
gunicorn (the production config: sendfile happens only there). Before the status line every
read path checks its files and answers 500 with a JSON reason naming the instance; after it,
the connection ends without the closing delimiter, so a client sees an error instead of a
body that looks complete. The connection and the worker live on."""
from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.archive.local import open_local
from gateway.ingest.importer import run_import
from gateway.archive.protocol import Level, Query, StoredInstance, UidPath
from gateway.config import Settings
from gateway.dicomweb.media import parse_media_type
from tests.support.dicomfiles import make_file
from tests.support.procs import GatewayServer, start_gateway

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"
BIG = 24  # 512 KiB instances: 12 MiB, three times what loopback buffers hold in flight
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts_dir: Path) -> Iterator[GatewayServer]:
    root = tmp_path_factory.mktemp("faults")
    src = root / "src"
    for n in range(BIG):
        make_file(src / f"big{n}.dcm", patient="F1", study="f", series="big", sop=f"big{n}",
                  size=512, InstanceNumber=n + 1)
    for n in range(3):
        make_file(src / f"small{n}.dcm", patient="F1", study="f", series="small",
                  sop=f"small{n}", size=64, InstanceNumber=n + 1)
    make_file(src / "multi.dcm", patient="F1", study="f", series="multi", sop="multi",
              size=512, frames=40)
    archive = open_local(Settings().replace(data_dir=root / "data"))
    assert run_import(archive, [src], workers=1, progress=False).new == BIG + 4
    srv = start_gateway(root / "data", artifacts_dir / "logs")
    yield srv
    srv.stop()


def series(server: GatewayServer, seed: str) -> list[StoredInstance]:
    from tests.support.dicomfiles import uid
    archive = open_local(Settings().replace(data_dir=server.data_dir))
    [match] = archive.search(Query(Level.SERIES, {"SeriesInstanceUID": uid("series", seed)})).matches
    return list(archive.instances(UidPath(match["0020000D"]["Value"][0], uid("series", seed))))


def rs(inst: StoredInstance, level: str = "instance") -> str:
    url = f"/dicomweb/studies/{inst.study_uid}"
    if level in ("series", "instance"):
        url += f"/series/{inst.series_uid}"
    return url + (f"/instances/{inst.sop_uid}" if level == "instance" else "")


def wado_uri(inst: StoredInstance, extra: str = "") -> str:
    return (f"/wado?requestType=WADO&studyUID={inst.study_uid}&seriesUID={inst.series_uid}"
            f"&objectUID={inst.sop_uid}{extra}")


def test_a_missing_or_shrunk_file_is_a_500_naming_it_before_any_byte(server) -> None:
    gone, shrunk, fine = series(server, "small")
    gone.path.unlink()
    shrunk.path.write_bytes(shrunk.path.read_bytes()[: shrunk.size - 100])
    requests_ = [(rs(gone, "series"), AS_STORED, gone), (rs(gone, "study"), AS_STORED, gone),
                 (rs(gone), AS_STORED, gone), (rs(gone), 'multipart/related; type="application/dicom"', gone),
                 (wado_uri(gone, "&contentType=application/dicom"), "*/*", gone),
                 (wado_uri(gone), "*/*", gone), (rs(gone) + "/frames/1", FRAMES, gone),
                 (rs(gone) + "/bulk/7FE00010", FRAMES, gone),
                 (rs(gone) + "/rendered", "image/jpeg", gone),
                 (rs(gone) + "/thumbnail", "image/jpeg", gone),
                 (rs(gone, "series") + "/rendered", "image/jpeg", gone),
                 (rs(shrunk), AS_STORED, shrunk), (rs(shrunk) + "/frames/1", FRAMES, shrunk),
                 (wado_uri(shrunk, "&contentType=application/dicom"), "*/*", shrunk)]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for url, accept, inst in requests_:
        conn.request("GET", url, headers={"Accept": accept})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 500, (url, resp.status, body[:200])
        assert resp.getheader("Content-Type") == "application/json"
        reason = json.loads(body)
        assert reason["instance"] == inst.sop_uid and inst.sop_uid in reason["message"]
        assert ("missing" if inst is gone else f"{shrunk.size - 100} bytes") in reason["message"]
    conn.request("GET", rs(fine) + "/frames/1", headers={"Accept": FRAMES})
    resp = conn.getresponse()  # the same connection: every 500 was a whole response
    assert resp.status == 200 and len(resp.read()) > 64 * 64 * 2
    conn.close()


def open_stream(server: GatewayServer, url: str, accept: str) -> tuple[socket.socket, dict, bytes]:
    """GET ``url`` on a socket with a small receive window, read up to the end of the
    headers: the server then blocks with most of the body still unsent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(30)  # nothing may hang: a timeout fails the test
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before the headers"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return sock, headers, body


def read_rest(sock: socket.socket, body: bytes, closing: bytes) -> tuple[bytes, bool]:
    """The rest of the body, and whether the server ended the connection (rather than
    finishing the message with its closing delimiter)."""
    while not body.endswith(closing):
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            return body, True
        if not chunk:
            return body, True
        body += chunk
    return body, False


def closing_of(headers: dict) -> bytes:
    boundary = parse_media_type(headers["content-type"]).params["boundary"]
    return b"--" + boundary.encode() + b"--\r\n"


def test_a_file_gone_while_a_series_is_sent_ends_the_connection(server) -> None:
    big = series(server, "big")
    sock, headers, body = open_stream(server, rs(big[0], "series"), AS_STORED)
    big[-1].path.unlink()  # the last part: far behind what is in flight
    body, cut = read_rest(sock, body, closing_of(headers))
    sock.close()
    assert cut and len(body) < int(headers["content-length"])
    assert len(body) >= sum(i.size for i in big[:8])  # it was sending (sendfile) until then


def test_a_file_shrunk_while_its_frames_are_sent_ends_the_connection(server) -> None:
    [multi] = series(server, "multi")
    numbers = ",".join(str(n) for n in range(1, 41))
    sock, headers, body = open_stream(server, rs(multi) + f"/frames/{numbers}", FRAMES)
    with open(multi.path, "r+b") as fh:  # shrunk in place: reads past here come back short
        fh.truncate(multi.size // 2)
    body, cut = read_rest(sock, body, closing_of(headers))
    sock.close()
    assert cut, "a short frame was framed as if whole: the body looks complete"
    assert len(body) < int(headers["content-length"])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200  # the worker lives on
    conn.close()
