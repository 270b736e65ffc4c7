"""OHIF (the real build, Debian's Chromium) on BACKEND=idc: the study list comes from the
IDC index with nothing fetched, and opening a radiograph study fetches its series from the
bucket (SeaweedFS in IDC's layout) and draws it."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterator

import pytest

from gateway.config import Settings
from tests.support.idc import idc_env, scan, synth_twin, upload, write_index
from tests.support.procs import GatewayServer, start_gateway

if importlib.util.find_spec("playwright") is None:
    if os.environ.get("CI"):
        raise ImportError("playwright is required in CI (requirements.txt)")
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

from playwright.sync_api import BrowserContext, Page, expect  # noqa: E402

from tests.e2e import ohif_page as ui  # noqa: E402

pytestmark = pytest.mark.browser
AR = "COVID-19-AR"


@pytest.fixture(scope="module")
def idc_viewer(tmp_path_factory: pytest.TempPathFactory, ohif_tarball: Path, s3_store,
               artifacts_dir: Path) -> Iterator[tuple[GatewayServer, list[str]]]:
    from gateway.viewer.install import install
    src, data = tmp_path_factory.mktemp("oi-src"), tmp_path_factory.mktemp("oi-data")
    twin = synth_twin(src / AR, AR, patients=2, xr_size=384, ct_size=64)
    series = list(scan(twin, AR).values())
    bucket = s3_store.create_bucket("idc-ohif")
    upload(s3_store, bucket, series)
    index = write_index(series, src / "index.parquet")
    install(Settings().replace(data_dir=data), tarball=ohif_tarball)
    server = start_gateway(data, artifacts_dir / "logs", env=idc_env(s3_store, bucket, index))
    pids = sorted({s.row["PatientID"] for s in series if s.row["Modality"] in ("DX", "CR")})
    yield server, pids
    server.stop()


@pytest.fixture
def page(browser_context: BrowserContext) -> Iterator[Page]:
    page = browser_context.new_page()
    page.add_init_script(ui.PROBE_JS)
    page.watch = ui.Watch().attach(page)  # type: ignore[attr-defined]
    yield page
    page.close()


def test_viewer_lists_from_the_index_and_draws_a_fetched_radiograph(
        page: Page, idc_viewer: tuple[GatewayServer, list[str]], shots: Path) -> None:
    server, pids = idc_viewer
    page.goto(f"{server.url}/viewer/")
    for pid in pids:
        expect(ui.study_rows(page, pid).first).to_be_visible(timeout=60_000)
    notice = page.get_by_role("button", name="Confirm and hide")
    if notice.is_visible():
        notice.click()
    page.screenshot(path=shots / "idc-study-list.png")
    ui.launch_basic_viewer(page, pids[0])
    ui.wait_first_image(page, timeout_ms=90_000)
    ui.skip_tour(page)
    ui.assert_real_images(ui.canvas_stats(page), "IDC radiograph")
    page.screenshot(path=shots / "idc-radiograph.png")
    page.watch.assert_clean()  # type: ignore[attr-defined]
