"""OHIF 3.13 (the real npm build, installed by `tcia-gateway viewer install`) on the gateway,
in Debian's Chromium: the study list, the PatientID filter, a 100-slice CT and radiographs
(CR, compressed JPEG 2000 / RLE, MONOCHROME1) drawn, zero failed requests, zero console
errors; with this gateway's data source options and with the conservative ones other sites
use. Prints the time from opening the CT to its first image (also in test-artifacts)."""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Iterator

import pytest

from tests.e2e.conftest import Study

if importlib.util.find_spec("playwright") is None:
    if os.environ.get("CI"):
        raise ImportError("playwright is required in CI (requirements.txt)")
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

from tests.e2e import ohif_page as ui  # noqa: E402

pytestmark = pytest.mark.browser

RLE = "1.2.840.10008.1.2.5"
J2K = "1.2.840.10008.1.2.4.90"


@pytest.fixture
def page(browser_context, request) -> Iterator[Page]:
    page = browser_context.new_page()
    page.add_init_script(ui.PROBE_JS)
    page.watch = ui.Watch().attach(page)
    yield page
    page.close()


def patients(studies: list[Study]) -> list[str]:
    return sorted({s.patient_id for s in studies})


def pick(studies: list[Study], **want) -> Study:
    for s in studies:
        if all(getattr(s, k) == v for k, v in want.items()):
            return s
    pytest.fail(f"the e2e cohort has no study with {want}: {studies}")


def test_study_list_shows_every_patient_and_filters_by_patient_id(
        page: Page, viewer_gateway, e2e_studies, shots) -> None:
    ui.open_study_list(page, viewer_gateway.url, patients(e2e_studies))
    expect(ui.study_rows(page, "COVID-19-AR-")).to_have_count(len(e2e_studies))
    for s in e2e_studies:    # descriptions need includefield=00081030 honoured (DESIGN §6)
        expect(ui.study_rows(page, s.accession)).to_contain_text(s.description)
        expect(ui.study_rows(page, s.accession)).to_contain_text(s.patient_id)
    page.screenshot(path=shots / "study-list.png")

    target = max(patients(e2e_studies), key=lambda p: sum(s.patient_id == p for s in e2e_studies))
    with page.expect_request(lambda r: "/dicomweb/studies?" in r.url and target in r.url
                             and ("00100020=" in r.url or "PatientID=" in r.url)):
        ui.column_filter(page, "MRN").fill(target)
    expected = [s for s in e2e_studies if s.patient_id == target]
    rows = ui.study_rows(page, "COVID-19-AR-")
    expect(rows).to_have_count(len(expected))
    for s in expected:
        expect(ui.study_rows(page, s.accession)).to_contain_text(target)
    page.screenshot(path=shots / "study-list-filtered.png")
    page.watch.assert_clean()


def test_data_source_follows_the_page_origin(page: Page, viewer_gateway, e2e_studies) -> None:
    """Opened as http://localhost:… (PUBLIC_URL says 127.0.0.1) the viewer still queries its
    own origin: app-config.js builds the roots from window.location.origin."""
    origin = viewer_gateway.url.replace("127.0.0.1", "localhost")
    hosts: set[str] = set()
    page.on("request", lambda r: "/dicomweb/" in r.url and hosts.add(r.url.split("/")[2]))
    ui.open_study_list(page, origin, patients(e2e_studies))
    assert hosts == {origin.split("/")[2]}
    page.watch.assert_clean()


def test_ct_100_slices_draws_and_first_image_time(page: Page, viewer_gateway, e2e_studies,
                                                  shots, artifacts_dir) -> None:
    ct = pick(e2e_studies, modality="CT")
    assert ct.instances == 100
    ui.open_study_list(page, viewer_gateway.url, patients(e2e_studies))
    opened = ui.launch_basic_viewer(page, ct.accession)
    first = ui.wait_first_image(page)
    expect(page).to_have_url(f"{viewer_gateway.url}/viewer/viewer?StudyInstanceUIDs={ct.study_uid}")
    last = ui.wait_all_frames(page, _series_of(page, ct), ct.instances)
    ui.skip_tour(page)
    ui.assert_real_images(ui.canvas_stats(page), "CT")
    page.screenshot(path=shots / "ct-100.png")
    result = {"study": ct.study_uid, "slices": ct.instances,
              "first_image_ms": round(first - opened), "all_frames_ms": round(last - opened),
              "ohif_studyToFirstImage_ms": page.watch.timers.get("studyToFirstImage")}
    (artifacts_dir / "ohif-first-image.json").write_text(json.dumps(result, indent=2))
    print(f"\nOHIF first CT image: {result['first_image_ms']} ms after opening the "
          f"{ct.instances}-slice study (all frames {result['all_frames_ms']} ms; OHIF's own "
          f"studyToFirstImage {result['ohif_studyToFirstImage_ms']} ms)")
    page.watch.assert_clean()


RADIOGRAPHS = {
    "CR JPEG 2000": dict(modality="CR", syntax=J2K),
    "DX RLE": dict(modality="DX", syntax=RLE),
    "CR MONOCHROME1": dict(modality="CR", photometric="MONOCHROME1"),
}


@pytest.mark.parametrize("kind", sorted(RADIOGRAPHS))
def test_radiograph_draws(kind: str, page: Page, viewer_gateway, e2e_studies, shots) -> None:
    study = pick(e2e_studies, **RADIOGRAPHS[kind])
    ui.open_study_list(page, viewer_gateway.url, patients(e2e_studies))
    ui.launch_basic_viewer(page, study.accession)
    ui.wait_first_image(page)
    ui.skip_tour(page)
    stats = ui.canvas_stats(page)
    ui.assert_real_images(stats, kind)
    page.screenshot(path=shots / f"{kind.replace(' ', '-').lower()}.png")
    assert stats[0]["centre"] > stats[0]["sides"] + 15, \
        f"{kind} ({study.photometric}): spine not brighter than the lung fields, polarity wrong? {stats[0]}"
    sent = page.watch.frame_part_types()
    assert any(f"transfer-syntax={study.syntax}" in t for t in sent), \
        f"{kind}: frames were not sent in the stored syntax {study.syntax}: {sent}"
    page.watch.assert_clean()


def test_conservative_data_source_settings_work_too(page: Page, viewer_gateway, e2e_studies,
                                                    shots) -> None:
    """DESIGN §5: no includefield, wadors thumbnails, no fuzzy matching, quoted multipart types."""
    page.route("**/viewer/app-config.js",
               lambda route: route.continue_(url=route.request.url + "?profile=conservative"))
    ui.open_study_list(page, viewer_gateway.url, patients(e2e_studies))
    expect(ui.study_rows(page, "COVID-19-AR-")).to_have_count(len(e2e_studies))
    for kind, want in (("CT", dict(modality="CT")), ("CR", dict(modality="CR", syntax=J2K))):
        study = pick(e2e_studies, **want)
        page.goto(viewer_gateway.url + "/viewer/")
        expect(ui.study_rows(page, study.accession)).to_be_visible()
        ui.launch_basic_viewer(page, study.accession)
        ui.wait_first_image(page)
        ui.wait_all_frames(page, _series_of(page, study), study.instances)
        ui.skip_tour(page)
        ui.assert_real_images(ui.canvas_stats(page), f"conservative {kind}")
        page.screenshot(path=shots / f"conservative-{kind.lower()}.png")
    page.watch.assert_clean()


def _series_of(page: Page, study: Study) -> str:
    """The series whose frames the viewer fetched for ``study`` (its displayed series)."""
    url = next(u for u in page.watch.frames if f"/studies/{study.study_uid}/series/" in u)
    return url.split("/series/")[1].split("/")[0]


def test_upload_from_the_study_list_then_view_it(browser_context, e2e_data_dir, artifacts_dir,
                                                 tmp_path, shots) -> None:
    """dicomUploadEnabled (STOW-RS): the Upload dialog stores a file, the list shows it, it draws.
    On its own gateway over a copy of the data, so the shared list keeps its counts."""
    import shutil

    from tests.support.dicomfiles import make_file
    from tests.support.procs import start_gateway
    data = tmp_path / "data"
    shutil.copytree(e2e_data_dir, data, ignore=shutil.ignore_patterns("viewer"))
    (data / "viewer").symlink_to(e2e_data_dir / "viewer")
    upload = make_file(tmp_path / "upload" / "upload.dcm", patient="UPLOAD-TEST-1", study="up",
                       modality="CR", size=256, AccessionNumber="UP0001",
                       StudyDescription="XR CHEST UPLOADED")
    server = start_gateway(data, artifacts_dir / "logs")
    page = browser_context.new_page()
    try:
        page.add_init_script(ui.PROBE_JS)
        watch = ui.Watch().attach(page)
        ui.open_study_list(page, server.url, ["COVID-19-AR-"])
        page.get_by_role("button", name="Upload").click()
        with page.expect_response(lambda r: r.request.method == "POST"
                                  and r.url == f"{server.url}/dicomweb/studies") as stow:
            page.locator("input[type=file]").first.set_input_files(str(upload))
        assert stow.value.status == 200
        expect(page.get_by_text("1 file completed.")).to_be_visible()
        page.get_by_role("button", name="Close", exact=True).first.click()
        expect(ui.study_rows(page, "UPLOAD-TEST-1")).to_contain_text("XR CHEST UPLOADED")
        ui.launch_basic_viewer(page, "UP0001")
        ui.wait_first_image(page)
        ui.skip_tour(page)
        ui.assert_real_images(ui.canvas_stats(page), "uploaded CR")
        page.screenshot(path=shots / "uploaded.png")
        watch.assert_clean()
    finally:
        page.close()
        server.stop()
