"""Whole-series and WADO-URI retrieves as stored go out with sendfile under the real
gunicorn (production config): byte-identical bodies, keep-alive kept across GET, HEAD
and other requests on one connection, gunicorn's access log counting every byte, and a
stored file that shrank answered with a 500 before any byte instead of a mis-framed body."""
from __future__ import annotations

import os

import http.client
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.archive.local import open_local
from gateway.archive.protocol import Level, Query, StoredInstance, UidPath
from gateway.config import Settings
from gateway.dicomweb import multipart
from gateway.dicomweb.media import parse_media_type
from tests.support.procs import GatewayServer, start_gateway, wait_until

AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


# sendfile(2) of local files: nothing of it applies to an object store (GATEWAY_TEST_STORE=s3)
pytestmark = pytest.mark.skipif(os.environ.get("GATEWAY_TEST_STORE") == "s3",
                                reason="zero copy is of DATA_DIR/files")

@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("zerocopy") / "data"
    shutil.copytree(loaded_data_dir, data)  # a private copy: one test shrinks a file
    srv = start_gateway(data, artifacts_dir / "logs")
    yield srv
    srv.stop()


def series_of(server: GatewayServer, modality: str) -> list[StoredInstance]:
    archive = open_local(Settings().replace(data_dir=server.data_dir))
    for s in archive.search(Query(Level.SERIES, {"Modality": modality})).matches:
        return list(archive.instances(UidPath(s["0020000D"]["Value"][0],
                                              s["0020000E"]["Value"][0])))
    raise AssertionError(f"no {modality} series")


def url_of(inst: StoredInstance) -> str:
    return f"/dicomweb/studies/{inst.study_uid}/series/{inst.series_uid}"


def get(conn: http.client.HTTPConnection, method: str, url: str,
        headers: dict | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, url, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


def test_series_keep_alive_head_and_the_bytes(server) -> None:
    ct = series_of(server, "CT")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    resp, body = get(conn, "GET", url_of(ct[0]), AS_STORED)
    local = conn.sock.getsockname()
    assert resp.status == 200 and resp.getheader("Connection") == "keep-alive"
    assert int(resp.getheader("Content-Length")) == len(body)
    boundary = parse_media_type(resp.getheader("Content-Type")).params["boundary"]
    parts = [(f"application/dicom; transfer-syntax={i.transfer_syntax}", i.path.read_bytes())
             for i in ct]
    assert body == multipart.encode(parts, boundary)
    head, nothing = get(conn, "HEAD", url_of(ct[0]), AS_STORED)
    assert head.status == 200 and nothing == b""
    assert head.getheader("Content-Length") == resp.getheader("Content-Length")
    again, body2 = get(conn, "GET", url_of(ct[0]), AS_STORED)
    assert again.status == 200
    qido, _ = get(conn, "GET", "/dicomweb/studies", {"Accept": "application/dicom+json"})
    assert len(body2) == len(body) and qido.status == 200
    assert conn.sock.getsockname() == local  # one connection throughout
    conn.close()
    line = f'"GET {url_of(ct[0])} HTTP/1.1" 200 {len(body)} '
    wait_until(lambda: line in server.proc.log_tail(1 << 20), timeout=10,
               what="access log line counting every byte")


def test_wado_uri_file_as_stored(server) -> None:
    inst = series_of(server, "CT")[0]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    query = (f"/wado?requestType=WADO&studyUID={inst.study_uid}&seriesUID={inst.series_uid}"
             f"&objectUID={inst.sop_uid}&contentType=application/dicom&transferSyntax=*")
    resp, body = get(conn, "GET", query)
    assert resp.status == 200 and body == inst.path.read_bytes()
    conn.close()


def test_a_shrunken_file_is_a_500_before_any_byte(server) -> None:
    """Checked before the status line (a file shrinking while it is sent cuts the response
    short instead: tests/integration/test_stored_file_faults.py)."""
    [dx] = series_of(server, "DX")[:1]
    dx.path.write_bytes(dx.path.read_bytes()[: dx.size // 2])  # behind the archive's back
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    resp, body = get(conn, "GET", url_of(dx), AS_STORED)
    assert resp.status == 500 and dx.sop_uid in body.decode()
    assert get(conn, "GET", "/healthz")[0].status == 200  # same connection; the worker lives on
    conn.close()
