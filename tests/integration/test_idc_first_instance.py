"""BACKEND=idc: one instance of a cold series is served as soon as its object is in, while
the rest of the series still arrives; the whole series only once all of it is; and a fetch
that fails after some instances were served leaves nothing of the series behind.

The gateway reaches SeaweedFS through a forwarding HTTP proxy (``HTTP_PROXY``, as a site
proxy would be) that lets one object through and holds every other GetObject until the
test opens the gate, then forwards them (or answers 404 NoSuchKey)."""
from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
import requests

from tests.support.idc import (IdcSeries, LiveApp, idc_settings, scan, serve, synth_twin, upload,
                               write_index)
from tests.support.seaweed import Seaweed

JSON = {"Accept": "application/dicom+json"}
HTTP = requests.Session()
HTTP.trust_env = False  # the test's own requests go straight to the gateway, not the proxy
NO_SUCH_KEY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
               b'<Message>The specified key does not exist.</Message></Error>')


class HoldingProxy:
    """A forward proxy for plain HTTP: GetObjects other than of ``let_through`` wait for
    ``gate``; ``fail`` turns the held ones into 404 NoSuchKey."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "", parts.port or 80)
        self.let_through: set[str] = set()
        self.gate = threading.Event()
        self.fail = False
        self.held: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        reader = conn.makefile("rb")
        with conn:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _version = line.decode().split(" ", 2)
                headers = {}
                while (h := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip()] = value.strip()
                path = urllib.parse.urlsplit(target)
                local = path.path + (f"?{path.query}" if path.query else "")
                status, reason, body, ctype = self._answer(method, local, headers, upstream)
                conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                             f"Content-Type: {ctype}\r\n\r\n".encode() + body)

    def _answer(self, method: str, local: str, headers: dict[str, str],
                upstream: http.client.HTTPConnection) -> tuple[int, str, bytes, str]:
        key = local.split("/", 2)[-1]
        if "?" not in local and key not in self.let_through:
            self.held.append(key)
            self.gate.wait(20)
            if self.fail:
                return 404, "Not Found", NO_SUCH_KEY, "application/xml"
        upstream.request(method, local, headers=headers)
        r = upstream.getresponse()
        return r.status, r.reason, r.read(), r.getheader("Content-Type", "")

    def close(self) -> None:
        self.gate.set()
        self.sock.close()


@pytest.fixture()
def setup(s3_store: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[LiveApp, HoldingProxy, IdcSeries]]:
    twin = scan(synth_twin(tmp_path / "twin", "COVID-19-AR", patients=1), "COVID-19-AR")
    bucket = s3_store.create_bucket(f"idc-first-{tmp_path.name[-6:].lower().replace('_', '-')}")
    upload(s3_store, bucket, list(twin.values()))
    index = write_index(list(twin.values()), tmp_path / "index.parquet")
    proxy = HoldingProxy(s3_store.endpoint_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    s = max(twin.values(), key=lambda t: len(t.objects))
    live = serve(idc_settings(s3_store, tmp_path / "data", bucket, index, idc_timeout=30.0))
    app = next(live)
    try:
        yield app, proxy, s
    finally:
        proxy.close()
        next(live, None)


def _sop_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _series_url(base: str, s: IdcSeries) -> str:
    return (f"{base}/dicomweb/studies/{s.row['StudyInstanceUID']}/series/"
            f"{s.row['SeriesInstanceUID']}")


def _series_count(base: str, s: IdcSeries) -> int:
    rows = HTTP.get(f"{base}/dicomweb/studies/{s.row['StudyInstanceUID']}/series",
                        params={"SeriesInstanceUID": s.row["SeriesInstanceUID"]},
                        headers=JSON, timeout=30).json()
    return int(rows[0]["00201209"]["Value"][0])


def _in_background(url: str) -> tuple[threading.Thread, dict[str, requests.Response]]:
    out: dict[str, requests.Response] = {}
    thread = threading.Thread(target=lambda: out.setdefault(
        "r", HTTP.get(url, headers=JSON, timeout=60)), daemon=True)
    thread.start()
    return thread, out


def _first_instance_while_held(live: LiveApp, proxy: HoldingProxy, s: IdcSeries
                               ) -> tuple[str, requests.Response, threading.Thread,
                                          dict[str, requests.Response]]:
    """The proxy lets the first-listed object through (listed first, so asked for first:
    the keys say nothing of SOPs); the series metadata asked in the background, then that
    instance's metadata: its SOP, its response, the series request's thread and result."""
    key = sorted(s.objects)[0]
    sop = _sop_of(s.objects[key])
    proxy.let_through.add(key)
    series_thread, series = _in_background(_series_url(live.url, s) + "/metadata")
    r = HTTP.get(f"{_series_url(live.url, s)}/instances/{sop}/metadata", headers=JSON,
                 timeout=30)
    return sop, r, series_thread, series


def test_one_instance_is_served_while_the_rest_of_its_series_is_held(
        setup: tuple[LiveApp, HoldingProxy, IdcSeries]) -> None:
    live, proxy, s = setup
    sop, r, series_thread, series = _first_instance_while_held(live, proxy, s)
    assert r.status_code == 200, r.text[:300]
    assert r.json()[0]["00080018"]["Value"] == [sop]
    assert proxy.held  # the rest of the series is still at the proxy...
    series_thread.join(0.5)
    assert series_thread.is_alive()  # ... and the whole series waits for it
    proxy.gate.set()
    series_thread.join(30)
    assert series["r"].status_code == 200 and len(series["r"].json()) == len(s.objects)
    assert _series_count(live.url, s) == len(s.objects)
    archive = live.app.extensions["tcia_gateway"]["archive"]
    assert archive.bucket.calls["GetObject"] == len(s.objects)  # one fetch served both


def test_a_fetch_failing_after_an_instance_was_served_leaves_nothing_behind(
        setup: tuple[LiveApp, HoldingProxy, IdcSeries]) -> None:
    live, proxy, s = setup
    study = HTTP.get(f"{live.url}/dicomweb/studies", headers=JSON, timeout=30,
                     params={"StudyInstanceUID": s.row["StudyInstanceUID"]}).json()[0]
    _sop, r, series_thread, series = _first_instance_while_held(live, proxy, s)
    assert r.status_code == 200, r.text[:300]
    proxy.fail = True
    proxy.gate.set()
    series_thread.join(30)
    assert series["r"].status_code == 502, series["r"].text[:300]
    assert "is missing (NoSuchKey)" in series["r"].json()["message"]
    archive = live.app.extensions["tcia_gateway"]["archive"]
    from sqlalchemy import func, select

    from gateway.archive.local.schema import instances
    with archive.index.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(instances)).scalar_one() == 0
    assert not list(Path(archive.files.tmp).glob("*.part"))
    assert _series_count(live.url, s) == len(s.objects)  # the index's count, not the part
    again = HTTP.get(f"{live.url}/dicomweb/studies", headers=JSON, timeout=30,
                     params={"StudyInstanceUID": s.row["StudyInstanceUID"]}).json()[0]
    assert again["00201208"] == study["00201208"]  # NumberOfStudyRelatedInstances
