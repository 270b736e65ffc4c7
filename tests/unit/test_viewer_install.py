"""The viewer install: rewrites on literal fixtures, loud failures, idempotence, the
install steps on a miniature npm tarball, the generated app-config and the FHIR link."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.viewer import install as inst
from gateway import links
from gateway.viewer.config import app_config_js, data_source
from gateway.viewer.rewrites import REWRITES, RewriteError, apply_rewrites, leftovers
from tests.support import ohif_fixture as mini


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return mini.write_mini_build(tmp_path / "dist")


def read(root: Path, name: str) -> str:
    return (root / name).read_text(encoding="utf-8")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ each rewrite
def test_index_html_public_url_and_every_root_path_move_under_viewer(build: Path) -> None:
    apply_rewrites(build)
    html = read(build, "index.html")
    assert html.count('window.PUBLIC_URL="/viewer/"') == 2 and 'PUBLIC_URL="/"' not in html
    for ref in ("/viewer/app-config.js", "/viewer/init-service-worker.js",
                f"/viewer/{mini.APP_BUNDLE}", "/viewer/app.bundle.css", "/viewer/manifest.json",
                "/viewer/assets/favicon.ico"):
        assert f'="{ref}"' in html
    assert 'href="//cdn.example.org"' in html and 'href="https://ohif.org/"' in html


def test_public_path_rewritten_in_app_and_worker_bundles_only(build: Path) -> None:
    apply_rewrites(build)
    for name in (mini.APP_BUNDLE, mini.DECODER):
        text = read(build, name)
        assert '__webpack_require__.p = "/viewer/";' in text
        assert '__webpack_require__.p = "/";' not in text
    assert read(build, mini.PLAIN_CHUNK) == mini.PLAIN_CHUNK_JS  # no runtime of its own


def test_css_fonts_service_worker_and_optional_paths(build: Path) -> None:
    apply_rewrites(build)
    css = read(build, "app.bundle.css")
    assert css.count(f"url(/viewer/{mini.FONT})") == 2 and "url(/a34" not in css
    sw = read(build, "init-service-worker.js")
    assert 'if (registration.scope.indexOf(location.origin + "/viewer/") === 0) ' \
           "registration.unregister();" in sw
    assert "'/viewer/dicom-microscopy-viewer/" in read(build, mini.APP_BUNDLE)
    assert json.loads(read(build, "manifest.json"))["icons"][0]["src"].startswith("/viewer/assets/")


def test_outcomes_count_replacements_per_file(build: Path) -> None:
    outcomes = {o.rewrite.name: o.files for o in apply_rewrites(build)}
    assert outcomes["index-public-url"] == {"index.html": 2}
    assert outcomes["index-asset-urls"] == {"index.html": 6}
    assert outcomes["app-public-path"] == {mini.APP_BUNDLE: 1}
    assert outcomes["worker-public-path"] == {mini.DECODER: 1}
    assert outcomes["css-font-urls"] == {"app.bundle.css": 2}
    assert leftovers(build) == []


# ------------------------------------------------------------------ idempotence
def test_applying_twice_changes_nothing(build: Path) -> None:
    apply_rewrites(build)
    first = snapshot(build)
    again = apply_rewrites(build)
    assert snapshot(build) == first
    assert all(o.replaced == 0 for o in again)
    assert all(o.files for o in again if o.rewrite.required)   # recognised as done


# ------------------------------------------------------------------ loud failures
MISSING = {
    "index-public-url": ("index.html", 'window.PUBLIC_URL="/"', 'window.PUBLIC_URL="./"'),
    "index-asset-urls": ("index.html", ' src="/', ' src="./'),
    "app-public-path": (mini.APP_BUNDLE, '__webpack_require__.p = "/";', '__webpack_require__.p = "";'),
    "worker-public-path": (mini.DECODER, '__webpack_require__.p = "/";', '__webpack_require__.p = "";'),
    "css-font-urls": ("app.bundle.css", "url(/", "url(./"),
    "service-worker-scope": ("init-service-worker.js", "registration.unregister();", "void 0;"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_a_missing_string_fails_naming_the_rewrite_file_and_string(build: Path, name: str) -> None:
    filename, old, new = MISSING[name]
    path = build / filename
    text = path.read_text()
    if name == "index-asset-urls":
        text = text.replace(' href="/', ' href="./')
    path.write_text(text.replace(old, new))
    with pytest.raises(RewriteError) as err:
        apply_rewrites(build)
    message = str(err.value)
    assert name in message and filename in message
    rewrite = next(rw for rw in REWRITES if rw.name == name)
    assert rewrite.searched in message


def test_a_missing_file_fails_naming_the_pattern(build: Path) -> None:
    (build / "app.bundle.css").unlink()
    with pytest.raises(RewriteError, match=r"css-font-urls.*no file matches 'app.bundle.css'"):
        apply_rewrites(build)


def test_worker_rewrite_must_reach_the_image_decoder(build: Path) -> None:
    """A worker runtime without codec wasm is not the decoder: refuse to pretend."""
    decoder = build / mini.DECODER
    decoder.write_text(decoder.read_text().replace(f'"{mini.WASM}"', '"chunk.js"'))
    with pytest.raises(RewriteError, match="image decoder worker"):
        apply_rewrites(build)


def test_optional_rewrites_may_be_absent(build: Path) -> None:
    (build / "manifest.json").unlink()
    app = build / mini.APP_BUNDLE
    app.write_text(app.read_text().replace("'/dicom-microscopy-viewer/", "'./dmv/"))
    outcomes = {o.rewrite.name: o for o in apply_rewrites(build)}
    assert not outcomes["manifest-icons"].files and not outcomes["microscopy-path"].files


# ------------------------------------------------------------------ install steps
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings().replace(data_dir=tmp_path / "data")


def test_install_from_tarball_extracts_rewrites_verifies_and_marks(tmp_path, settings) -> None:
    tarball = mini.mini_tarball(tmp_path / "pack")
    result = inst.install(settings, version="0.0.0-mini", tarball=tarball)
    root = settings.data_dir / "viewer"
    assert result.root == root and not result.reused
    assert 'src="/viewer/app-config.js"' in read(root, "index.html")
    assert (root / mini.WASM).read_bytes() == mini.WASM_BYTES
    assert gzip.decompress((root / f"{mini.APP_BUNDLE}.gz").read_bytes()) == \
        (root / mini.APP_BUNDLE).read_bytes()            # gzipped after the rewrite
    assert not (root / f"{mini.WASM}.gz").exists()      # wasm goes as it is
    marker = inst.read_marker(root)
    assert marker["version"] == "0.0.0-mini" and marker["integrity"].startswith("sha512-")
    assert inst.verify(root) == []
    assert not list(settings.data_dir.glob(".viewer-*"))   # staging cleaned up


def test_second_install_is_a_no_op_and_force_reinstalls(tmp_path, settings) -> None:
    tarball = mini.mini_tarball(tmp_path / "pack")
    inst.install(settings, version="0.0.0-mini", tarball=tarball)
    before = snapshot(settings.data_dir / "viewer")
    again = inst.install(settings, version="0.0.0-mini", tarball=tarball)
    assert again.reused and snapshot(settings.data_dir / "viewer") == before
    (settings.data_dir / "viewer" / "stray.txt").write_text("x")
    forced = inst.install(settings, version="0.0.0-mini", tarball=tarball, force=True)
    assert not forced.reused and not (settings.data_dir / "viewer" / "stray.txt").exists()


def test_a_damaged_install_is_redone(tmp_path, settings) -> None:
    tarball = mini.mini_tarball(tmp_path / "pack")
    inst.install(settings, version="0.0.0-mini", tarball=tarball)
    (settings.data_dir / "viewer" / mini.WASM).unlink()
    assert any(mini.WASM in p for p in inst.verify(settings.data_dir / "viewer"))
    assert not inst.install(settings, version="0.0.0-mini", tarball=tarball).reused
    assert (settings.data_dir / "viewer" / mini.WASM).is_file()


def test_failed_rewrite_leaves_the_previous_install_untouched(tmp_path, settings) -> None:
    good = mini.mini_tarball(tmp_path / "good")
    inst.install(settings, version="0.0.0-mini", tarball=good)
    files = dict(mini.FILES, **{"app.bundle.css": ".z{}"})
    bad = mini.mini_tarball(tmp_path / "bad", version="0.0.1-mini", files=files)
    with pytest.raises(inst.InstallError, match="css-font-urls"):
        inst.install(settings, version="0.0.1-mini", tarball=bad)
    assert inst.read_marker(settings.data_dir / "viewer")["version"] == "0.0.0-mini"
    assert not list(settings.data_dir.glob(".viewer-*"))


def test_version_and_integrity_are_checked(tmp_path, settings) -> None:
    tarball = mini.mini_tarball(tmp_path / "pack")
    with pytest.raises(inst.InstallError, match=r"holds @ohif/app@0.0.0-mini, not 9.9.9"):
        inst.install(settings, version="9.9.9", tarball=tarball)
    forged = mini.mini_tarball(tmp_path / "forged", version=inst.DEFAULT_VERSION)
    with pytest.raises(inst.InstallError, match="differs from the published"):
        inst.install(settings, tarball=forged)


def test_without_npm_the_error_says_what_to_install(settings, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(inst.InstallError, match="npm not found.*--from-tarball"):
        inst.install(settings, force=True)


# ------------------------------------------------------------------ app-config and links
def test_data_source_options_are_designs() -> None:
    ds = data_source()
    assert (ds["qidoRoot"], ds["wadoRoot"], ds["wadoUriRoot"]) == ("/dicomweb", "/dicomweb", "/wado")
    assert ds["qidoSupportsIncludeField"] and ds["omitQuotationForMultipartRequest"]
    assert ds["thumbnailRendering"] == "thumbnail" and ds["imageRendering"] == "wadors"
    assert ds["bulkDataURI"] == {"enabled": True, "relativeResolution": "studies"}
    conservative = data_source("conservative")
    assert not conservative["qidoSupportsIncludeField"] and not conservative["supportsFuzzyMatching"]
    assert conservative["thumbnailRendering"] == "wadors"
    assert not conservative["omitQuotationForMultipartRequest"]


def test_app_config_js_runs_and_roots_follow_the_page_origin() -> None:
    node = shutil.which("node")
    if not node:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI (it also provides npm for the viewer install)")
        pytest.skip("node not installed")
    script = ('var window = {location: {origin: "https://pacs.example:8443"}};\n'
              + app_config_js() + "\nprocess.stdout.write(JSON.stringify(window.config));")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout
    config = json.loads(out)
    assert config["routerBasename"] == "/viewer"
    source = config["dataSources"][0]
    assert config["defaultDataSourceName"] == source["sourceName"]
    assert source["configuration"]["qidoRoot"] == "https://pacs.example:8443/dicomweb"
    assert source["configuration"]["wadoUriRoot"] == "https://pacs.example:8443/wado"


def test_viewer_study_url_and_fhir_extension() -> None:
    uid = "1.2.826.0.1.3680043.8.498.123"
    url = links.viewer_study_url("http://gw.example:8080/", uid)
    assert url == f"http://gw.example:8080/viewer/viewer?StudyInstanceUIDs={uid}"
    ext = links.viewer_extension("http://gw.example:8080", uid)
    assert ext == {"url": links.VIEWER_EXTENSION_URL, "valueUrl": url}
    from fhir.resources.R4B.imagingstudy import ImagingStudy
    study = ImagingStudy.model_validate({"resourceType": "ImagingStudy", "status": "available",
                                         "subject": {"reference": "Patient/p"}, "extension": [ext]})
    assert study.extension[0].valueUrl == url


def test_app_config_js_has_the_oidc_block_with_absolute_uris() -> None:
    from gateway.viewer.config import oidc_block
    node = shutil.which("node")
    if not node:
        pytest.skip("node not installed")
    block = oidc_block("https://login.example/realms/x/", "ohif")
    script = ('var window = {location: {origin: "https://pacs.example:8443"}};\n'
              + app_config_js(oidc=block) + "\nprocess.stdout.write(JSON.stringify(window.config));")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout
    oidc = json.loads(out)["oidc"][0]
    assert oidc["authority"] == "https://login.example/realms/x"
    assert (oidc["client_id"], oidc["response_type"], oidc["automaticSilentRenew"]) == (
        "ohif", "code", True)
    assert oidc["redirect_uri"] == "https://pacs.example:8443/viewer/callback"
    assert oidc["post_logout_redirect_uri"] == "https://pacs.example:8443/viewer/signed-out"
    assert "oidc" not in json.loads(subprocess.run(
        [node, "-e", 'var window = {location: {origin: "http://h"}};\n' + app_config_js()
         + "\nprocess.stdout.write(JSON.stringify(window.config));"],
        capture_output=True, text=True, check=True).stdout)
