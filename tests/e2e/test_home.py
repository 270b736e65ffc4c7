"""The home page in headless Chromium, as a researcher uses it: what the archive holds, then the
cohort builder. Pick "Diabetes mellitus type 2" and "CT": the live count equals the FHIR
``_summary=count`` answer to the same question (and the DICOM files' truth); "download" starts
a ZIP with that CT; "open in viewer" draws the CT in the bundled OHIF. Screenshots are saved
in the test's tmp dir and in test-artifacts/e2e."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.e2e import ohif_page as ui
from tests.support.procs import GatewayServer, start_gateway

pytestmark = pytest.mark.browser
# Seed 5: two CT patients, one of them with type 2 diabetes (so the pick is a real narrowing).
HOME_COHORT = dict(patients=6, seed=5, ct_slices=20, xr_size=256, ct_fraction=0.34, ct_size=256)
DIABETES_2 = "44054006"
FHIR_COUNT = ("ImagingStudy?modality=CT&patient._has:Condition:patient:code="
              f"http://snomed.info/sct|{DIABETES_2}&_summary=count")


@pytest.fixture(scope="module")
def home_cohort(tmp_path_factory):
    from gateway.synth import write_cohort
    return write_cohort(tmp_path_factory.mktemp("home-cohort"), **HOME_COHORT)


@pytest.fixture(scope="module")
def home_gateway(home_cohort, tmp_path_factory, ohif_tarball: Path,
                 artifacts_dir: Path) -> Iterator[GatewayServer]:
    from gateway.archive.local import open_local
    from gateway.config import Settings
    from gateway.ingest.clinical import import_clinical
    from gateway.ingest.importer import run_import
    from gateway.viewer.install import install
    data = tmp_path_factory.mktemp("home-data")
    settings = Settings().replace(data_dir=data)
    archive = open_local(settings)
    assert run_import(archive, [home_cohort.root], workers=2, progress=False).new
    import_clinical(archive, home_cohort.xlsx)
    archive.close()
    install(settings, tarball=ohif_tarball)
    server = start_gateway(data, artifacts_dir / "logs")
    yield server
    server.stop()


@pytest.fixture
def page(browser_context) -> Iterator[Page]:
    page = browser_context.new_page()
    page.add_init_script(ui.PROBE_JS)
    page.watch = ui.Watch().attach(page)
    yield page
    page.close()


def ct_studies(cohort, diabetic_only: bool) -> set[str]:
    """The CT studies of the cohort (of type 2 diabetics), from the sheet and the files."""
    import csv

    import pydicom
    rows = {r["patient_id"]: r for r in csv.DictReader(open(cohort.clinical_csv))}
    found = set()
    for path in Path(cohort.root).rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality == "CT" and (not diabetic_only
                                    or rows[ds.PatientID]["diabetes_type_ii"] == "Y"):
            found.add(ds.StudyInstanceUID)
    return found


def pick(page: Page, facet: str, value: str) -> None:
    box = page.locator(f'input[data-facet="{facet}"][value="{value}"]')
    expect(box).to_be_visible(timeout=30_000)
    box.check()


def count(page: Page, query: str) -> int:
    """The live count once the page has the answer for this selection."""
    page.wait_for_function("(q) => document.getElementById('answer').dataset.ready === q",
                           arg=query, timeout=30_000)
    return int(page.locator("#count-studies").inner_text())


def test_home_page_builds_a_cohort_and_hands_it_on(page: Page, home_gateway, home_cohort,
                                                    tmp_path, shots) -> None:
    page.goto(home_gateway.url + "/")
    expect(page.locator("#collections tbody tr")).to_have_count(1, timeout=30_000)
    expect(page.locator("#collections")).to_contain_text("COVID-19-AR")
    expect(page.locator("#collections")).to_contain_text("CC BY 4.0")
    expect(page.locator("#citations")).to_contain_text("10.7937/tcia.2020.py71-5978")
    expect(page.locator("#services")).to_contain_text(home_gateway.url + "/fhir/metadata")
    everything = count(page, "")
    assert everything == len({s for s in _all_studies(home_cohort)})

    expect(page.get_by_text("Diabetes mellitus type 2")).to_be_visible()
    pick(page, "condition", DIABETES_2)
    pick(page, "modality", "CT")
    shown = count(page, f"condition={DIABETES_2}&modality=CT")
    fhir = requests.get(f"{home_gateway.url}/fhir/{FHIR_COUNT}", timeout=30).json()["total"]
    truth = ct_studies(home_cohort, diabetic_only=True)
    assert shown == fhir == len(truth) and 0 < shown < len(ct_studies(home_cohort, False))
    page.screenshot(path=tmp_path / "home-selection.png", full_page=True)
    page.screenshot(path=shots / "home-selection.png", full_page=True)

    with page.expect_download(timeout=60_000) as started:
        page.locator("#download").click()
    download = started.value
    assert download.suggested_filename.endswith(".zip")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    archive = zipfile.ZipFile(io.BytesIO(saved.read_bytes()))
    assert archive.testzip() is None
    dicoms = [n for n in archive.namelist() if n.endswith(".dcm")]
    assert len(dicoms) == HOME_COHORT["ct_slices"] * len(truth)

    page.locator("#open-viewer").click()
    expect(page).to_have_url(f"{home_gateway.url}/viewer/viewer?StudyInstanceUIDs="
                             f"{next(iter(truth))}", timeout=30_000)
    page.evaluate(ui.ARM_JS)
    ui.wait_first_image(page)
    ui.skip_tour(page)
    ui.assert_real_images(ui.canvas_stats(page), "CT opened from the home page")
    page.screenshot(path=tmp_path / "home-viewer.png")
    page.screenshot(path=shots / "home-viewer.png")
    assert (tmp_path / "home-selection.png").stat().st_size > 10_000


def _all_studies(cohort) -> set[str]:
    import pydicom
    return {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
            for p in Path(cohort.root).rglob("*.dcm")}
