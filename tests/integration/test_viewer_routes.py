"""The viewer routes under the real gunicorn: files, content types, caching, the SPA
fallback, the redirect, and the not-installed message (then an install while running).
The build is the miniature one (tests/support/ohif_fixture.py), installed by the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support import ohif_fixture as mini
from tests.support.procs import REPO, GatewayServer, start_gateway

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
NOT_INSTALLED = "viewer not installed: run `tcia-gateway viewer install`"


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "gateway", "viewer", *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def cli_install(data_dir: Path, tarball: Path) -> subprocess.CompletedProcess:
    done = cli(data_dir, "install", "--from-tarball", str(tarball), "--version", "0.0.0-mini")
    assert done.returncode == 0, done.stderr + done.stdout
    return done


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory, artifacts_dir: Path) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("viewer-data")
    cli_install(data, mini.mini_tarball(tmp_path_factory.mktemp("pack")))
    server = start_gateway(data, artifacts_dir / "logs")
    yield server
    server.stop()


def get(server: GatewayServer, path: str, **kw) -> requests.Response:
    return requests.get(server.url + path, timeout=10, allow_redirects=False, **kw)


def test_bare_mount_redirects_to_slash_keeping_the_query(viewer_server) -> None:
    r = get(viewer_server, "/viewer")
    assert r.status_code == 308 and r.headers["Location"] == "viewer/"
    r = get(viewer_server, "/viewer?StudyInstanceUIDs=1.2.3")
    assert r.headers["Location"] == "viewer/?StudyInstanceUIDs=1.2.3"
    followed = requests.get(viewer_server.url + "/viewer", timeout=10)
    assert followed.url == viewer_server.url + "/viewer/" and "<div id=\"root\">" in followed.text


@pytest.mark.parametrize("path, content_type, cache", [
    ("/viewer/", "text/html; charset=utf-8", "no-cache"),
    (f"/viewer/{mini.APP_BUNDLE}", "text/javascript; charset=utf-8", "immutable"),
    (f"/viewer/{mini.DECODER}", "text/javascript; charset=utf-8", "immutable"),
    (f"/viewer/{mini.WASM}", "application/wasm", "immutable"),
    (f"/viewer/{mini.FONT}", "font/woff2", "immutable"),
    ("/viewer/app.bundle.css", "text/css; charset=utf-8", "no-cache"),
    ("/viewer/1602.css", "text/css; charset=utf-8", "no-cache"),
    ("/viewer/manifest.json", "application/json", "no-cache"),
    ("/viewer/assets/favicon.ico", "image/x-icon", "no-cache"),
    ("/viewer/assets/images/CT-AAA.png", "image/png", "no-cache"),
])
def test_files_are_served_with_their_type_and_cache_policy(viewer_server, path, content_type,
                                                           cache) -> None:
    r = get(viewer_server, path, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == content_type
    assert cache in r.headers["Cache-Control"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    name = path.removeprefix("/viewer/") or "index.html"
    assert r.content == (viewer_server.data_dir / "viewer" / name).read_bytes()  # decoded


def test_big_bundles_go_gzipped_from_install_time_copies_and_wasm_never(viewer_server) -> None:
    bundle = f"/viewer/{mini.APP_BUNDLE}"
    packed = get(viewer_server, bundle, headers={"Accept-Encoding": "gzip"}, stream=True)
    raw_bytes = packed.raw.read()
    gz = viewer_server.data_dir / "viewer" / f"{mini.APP_BUNDLE}.gz"
    assert packed.headers["Content-Encoding"] == "gzip" and raw_bytes == gz.read_bytes()
    assert "Accept-Encoding" in packed.headers["Vary"]
    plain = get(viewer_server, bundle, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.content.startswith(b"/* OHIF")
    wasm = get(viewer_server, f"/viewer/{mini.WASM}", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in wasm.headers and wasm.content == mini.WASM_BYTES


def test_served_build_is_the_rewritten_one(viewer_server) -> None:
    html = get(viewer_server, "/viewer/").text
    assert 'window.PUBLIC_URL="/viewer/"' in html and 'src="/viewer/app-config.js"' in html
    js = get(viewer_server, f"/viewer/{mini.DECODER}").text
    assert '__webpack_require__.p = "/viewer/"' in js


def test_app_config_is_generated_for_this_gateway(viewer_server) -> None:
    r = get(viewer_server, "/viewer/app-config.js")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    body = r.text
    assert '"routerBasename": "/viewer"' in body and '"qidoRoot": "/dicomweb"' in body
    assert "window.location.origin" in body and '"thumbnailRendering": "thumbnail"' in body
    assert "routerBasename: null" not in body       # not the build's own file
    conservative = get(viewer_server, "/viewer/app-config.js?profile=conservative").text
    assert '"qidoSupportsIncludeField": false' in conservative
    assert get(viewer_server, "/viewer/app-config.js?profile=nope").status_code == 404


@pytest.mark.parametrize("route", ["/viewer/viewer?StudyInstanceUIDs=1.2.840.1.2",
                                   "/viewer/segmentation", "/viewer/viewer/1.2.840.113619.2",
                                   "/viewer/local"])
def test_client_side_routes_fall_back_to_index_html(viewer_server, route) -> None:
    r = get(viewer_server, route, headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.text == (viewer_server.data_dir / "viewer" / "index.html").read_text()


@pytest.mark.parametrize("path", ["/viewer/9999.bundle.0000000000000000.js",
                                  "/viewer/missing.wasm", "/viewer/assets/nope.png"])
def test_a_missing_static_file_is_a_404_not_html(viewer_server, path) -> None:
    r = get(viewer_server, path)
    assert r.status_code == 404 and "text/html" not in r.headers["Content-Type"]
    assert "not part of the installed viewer build" in r.json()["message"]


def test_install_marker_and_paths_outside_the_build_are_not_served(viewer_server) -> None:
    assert get(viewer_server, "/viewer/.tcia-gateway-install.json").status_code == 404
    for path in ("/viewer/%2e%2e/index.sqlite", "/viewer/..%2findex.sqlite"):
        r = get(viewer_server, path)
        assert b"SQLite format" not in r.content


def test_revalidation_answers_304(viewer_server) -> None:
    first = get(viewer_server, "/viewer/app.bundle.css")
    again = get(viewer_server, "/viewer/app.bundle.css",
                headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and not again.content


def test_head_gives_length_without_body(viewer_server) -> None:
    r = requests.head(viewer_server.url + f"/viewer/{mini.WASM}", timeout=10)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(mini.WASM_BYTES)


def test_not_installed_says_how_then_install_while_running(tmp_path, artifacts_dir) -> None:
    data = tmp_path / "data"
    data.mkdir()
    server = start_gateway(data, artifacts_dir / "logs")
    try:
        r = get(server, "/viewer/")
        assert r.status_code == 404 and r.json()["message"] == NOT_INSTALLED
        page = get(server, "/viewer/viewer?StudyInstanceUIDs=1.2", headers={"Accept": BROWSER_ACCEPT})
        assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
        assert "tcia-gateway viewer install" in page.text
        status = cli(data, "status")
        assert status.returncode == 3 and "not installed" in status.stdout
        cli_install(data, mini.mini_tarball(tmp_path / "pack"))
        assert get(server, "/viewer/").status_code == 200       # no restart needed
        status = cli(data, "status")
        assert status.returncode == 0 and "@ohif/app@0.0.0-mini" in status.stdout
    finally:
        server.stop()


def test_demo_hint_matches_the_install(tmp_path, capsys) -> None:
    from gateway.cli import _viewer_hint
    from gateway.config import Settings
    settings = Settings().replace(data_dir=tmp_path / "data")
    _viewer_hint(settings)
    assert "run `tcia-gateway viewer install`" in capsys.readouterr().out
    from gateway.viewer.install import install
    install(settings, version="0.0.0-mini", tarball=mini.mini_tarball(tmp_path / "pack"))
    _viewer_hint(settings)
    assert f"viewer: {settings.public_base}/viewer/" in capsys.readouterr().out
