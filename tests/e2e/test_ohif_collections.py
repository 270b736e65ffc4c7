"""OHIF (the real build, Debian's Chromium) on a collection root: in an archive holding the
COVID-19-AR and MIDRC-RICORD-1C twins side by side, ``/viewer/?dataSources=MIDRC-RICORD-1C``
lists that collection's studies only, a radiograph opened from it draws, and every DICOMweb
request the viewer makes goes to ``/collections/MIDRC-RICORD-1C/dicomweb``."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterator

import pytest

from gateway.cli import do_import
from gateway.config import Settings
from tests.support.procs import GatewayServer, start_gateway

if importlib.util.find_spec("playwright") is None:
    if os.environ.get("CI"):
        raise ImportError("playwright is required in CI (requirements.txt)")
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

from playwright.sync_api import BrowserContext, Page, expect  # noqa: E402

from tests.e2e import ohif_page as ui  # noqa: E402

pytestmark = pytest.mark.browser
AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"


@pytest.fixture(scope="module")
def two_collections(tmp_path_factory: pytest.TempPathFactory, ohif_tarball: Path,
                    artifacts_dir: Path) -> Iterator[tuple[GatewayServer, dict[str, list[str]]]]:
    from gateway.synth import write_twin
    from gateway.viewer.install import install
    data, src = tmp_path_factory.mktemp("oc-data"), tmp_path_factory.mktemp("oc-src")
    settings = Settings().replace(data_dir=data)
    pids: dict[str, list[str]] = {}
    roots = []
    for name in (AR, RICORD):
        summary = write_twin(src / name, name, patients=3, xr_size=384, ct_size=64, seed=5)
        roots.append(summary.root)
        pids[name] = sorted({p.name for p in summary.root.iterdir() if p.is_dir()})
    do_import(settings, roots, [])
    install(settings, tarball=ohif_tarball)
    server = start_gateway(data, artifacts_dir / "logs")
    yield server, pids
    server.stop()


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    page = browser_context.new_page()
    page.add_init_script(ui.PROBE_JS)
    page.watch = ui.Watch().attach(page)  # type: ignore[attr-defined]
    yield page
    page.close()


def test_viewer_on_one_collection_root(page: Page, two_collections: tuple[GatewayServer, dict],
                                       shots: Path) -> None:
    server, pids = two_collections
    dicomweb: list[str] = []
    page.on("request", lambda r: dicomweb.append(r.url)
            if "/dicomweb/" in r.url or "/wado" in r.url else None)
    page.goto(f"{server.url}/viewer/?dataSources={RICORD}")
    for pid in pids[RICORD]:
        expect(ui.study_rows(page, pid).first).to_be_visible(timeout=60_000)
    notice = page.get_by_role("button", name="Confirm and hide")
    if notice.is_visible():
        notice.click()
    expect(ui.study_rows(page, "COVID-19-AR-")).to_have_count(0)
    page.screenshot(path=shots / "collection-study-list.png")
    ui.launch_basic_viewer(page, pids[RICORD][0])
    ui.wait_first_image(page)
    ui.skip_tour(page)
    ui.assert_real_images(ui.canvas_stats(page), f"{RICORD} radiograph")
    page.screenshot(path=shots / "collection-radiograph.png")
    root = f"{server.url}/collections/{RICORD}/dicomweb/"
    assert dicomweb and all(u.startswith(root) for u in dicomweb), \
        [u for u in dicomweb if not u.startswith(root)][:5]
    page.watch.assert_clean()  # type: ignore[attr-defined]
