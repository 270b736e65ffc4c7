"""What a hostile (or careless) client sends to the read paths, answered in each face's own
form: DICOMweb 400 + a JSON reason naming the parameter, FHIR OperationOutcome, DIMSE a
failure status. Never a 500, never a response that eats a worker's memory. Driven through
the app (Flask's test client) on the 6-patient cohort; the FHIR paths that depend on how
the server decodes ``%2f`` go through the real gunicorn."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from gateway import create_app
from gateway.archive.local import open_local
from gateway.archive.protocol import Level, Query, StoredInstance, UidPath
from gateway.config import Settings, SettingsError
from gateway.clinical import resources
from tests.support import dcmtk
from tests.support.remote import start_scp

FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def settings(loaded_data_dir: Path) -> Settings:
    return Settings().replace(data_dir=loaded_data_dir)


@pytest.fixture(scope="module")
def client(settings: Settings):
    return create_app(settings).test_client()


@pytest.fixture(scope="module")
def images(settings: Settings) -> list[StoredInstance]:
    """Every instance with pixel data, the radiographs (one frame) first."""
    archive = open_local(settings)
    out: list[StoredInstance] = []
    for s in archive.search(Query(Level.SERIES, {})).matches:
        out += archive.instances(UidPath(s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]))
    return sorted((i for i in out if i.number_of_frames), key=lambda i: i.sop_class_uid != CR)


CR = "1.2.840.10008.5.1.4.1.1.1"


def rs_url(inst: StoredInstance) -> str:
    return f"/dicomweb/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"


def uri_url(inst: StoredInstance, extra: str = "") -> str:
    return (f"/wado?requestType=WADO&studyUID={inst.study_uid}&seriesUID={inst.series_uid}"
            f"&objectUID={inst.sop_uid}{extra}")


def bad_request(response, attribute: str | None, *words: str) -> str:
    """A DICOMweb 400 with a JSON reason (naming ``attribute`` when given)."""
    assert response.status_code == 400, (response.status_code, response.data[:300])
    body = response.get_json()
    assert body["status"] == 400 and response.headers["Warning"].startswith("299 ")
    if attribute is not None:
        assert body["attribute"] == attribute, body
    for word in words:
        assert word in body["message"], body
    return body["message"]


def outcome(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    resources.validate(body)
    return body["issue"][0]


# --------------------------------------------------------- #2 memory: one pixel limit
def test_wado_uri_rows_and_columns_are_bounded_like_the_viewport(client, images) -> None:
    cr = images[0]
    r = client.get(uri_url(cr, "&rows=10000&columns=10000"))  # 10^8 pixels: a worker's GBs
    bad_request(r, "rows", "MAX_RENDERED_PIXELS")
    bad_request(client.get(uri_url(cr, "&rows=100000&columns=100000")), "rows")
    # One side alone: the other follows the aspect ratio, and the result is what counts.
    assert "MAX_RENDERED_PIXELS" in bad_request(client.get(uri_url(cr, "&rows=30000")), None)
    for side in ("rows=0", "columns=-3"):
        bad_request(client.get(uri_url(cr, "&" + side)), side.split("=")[0])
    ok = client.get(uri_url(cr, "&rows=300"))
    assert ok.status_code == 200 and Image.open(io.BytesIO(ok.data)).height == 300
    bad_request(client.get(rs_url(cr) + "/rendered?viewport=8192,8192"), "viewport",
                "MAX_RENDERED_PIXELS")
    assert client.get(rs_url(cr) + "/rendered?viewport=4096,4096").status_code == 200


def test_the_pixel_limit_is_one_setting_for_both_faces(settings, images) -> None:
    small = create_app(settings.replace(max_rendered_pixels=100 * 100)).test_client()
    cr = images[0]
    bad_request(small.get(rs_url(cr) + "/rendered?viewport=101,100"), "viewport", "10000")
    bad_request(small.get(uri_url(cr, "&rows=101&columns=100")), "rows", "10000")
    assert small.get(rs_url(cr) + "/rendered?viewport=100,100").status_code == 200
    assert small.get(uri_url(cr, "&rows=100&columns=100")).status_code == 200
    with pytest.raises(SettingsError, match="MAX_RENDERED_PIXELS"):
        Settings.load(env={"GATEWAY_MAX_RENDERED_PIXELS": "0"})


# --------------------------------------------- #9 viewport source region, PS3.18 8.3.5.1.3
@pytest.mark.parametrize("viewport", ["100,100,-10,-10,50,50", "100,100,0,0,-50,50",
                                      "100,100,0,0,inf,50", "100,100,nan,0,50,50",
                                      "100,100,0,0,100000000,100000000", "1e400,100",
                                      "100,100,0,0,0", "0,100"])
def test_a_malformed_viewport_is_400(client, images, viewport) -> None:
    bad_request(client.get(rs_url(images[0]) + f"/rendered?viewport={viewport}"), "viewport")


def test_a_region_outside_the_image_is_400_and_one_past_its_edge_is_padded(client,
                                                                          images) -> None:
    cr = images[0]
    for url in (rs_url(cr), rs_url(cr).rsplit("/instances/", 1)[0]):  # one image, a series
        bad_request(client.get(url + "/rendered?viewport=100,100,5000,5000,10,10"),
                    "viewport", "outside")
    full = Image.open(io.BytesIO(client.get(rs_url(cr) + "/rendered",
                                            headers={"Accept": "image/png"}).data))
    w, h = full.size
    # The right half of this region lies past the image's right edge: black there.
    r = client.get(rs_url(cr) + f"/rendered?viewport=100,100,{w - 50},0,100,100",
                   headers={"Accept": "image/png"})
    assert r.status_code == 200
    shown = Image.open(io.BytesIO(r.data))
    assert shown.size == (100, 100)
    assert shown.crop((55, 0, 100, 100)).getextrema() == (0, 0)
    assert shown.crop((0, 0, 45, 100)).getextrema()[1] > 0
    assert h > 100


# ---------------------------------------------------------- #11, #12 windows (C.11.2.1.2)
@pytest.mark.parametrize("window", ["NaN,NaN", "0,inf", "inf,100", "40,0", "40,-5",
                                    "1e308,400", "40,1e-320"])  # inf and 0 in float32
def test_a_window_that_is_not_finite_and_positive_is_400_on_wado_rs(client, images,
                                                                    window) -> None:
    bad_request(client.get(rs_url(images[0]) + f"/rendered?window={window}"), "window")


@pytest.mark.parametrize("center, width, named", [
    ("NaN", "100", "windowCenter"), ("40", "inf", "windowWidth"), ("40", "0", "windowWidth"),
    ("40", "-400", "windowWidth"), ("-inf", "400", "windowCenter"),
    ("1e308", "400", "windowCenter")])
def test_a_window_that_is_not_finite_and_positive_is_400_on_wado_uri(client, images, center,
                                                                     width, named) -> None:
    r = client.get(uri_url(images[0], f"&windowCenter={center}&windowWidth={width}"))
    bad_request(r, named)


# ----------------------------------------------------- #8 integers no SQL integer holds
def test_qido_numbers_too_large_for_sql_are_400_naming_the_parameter(client) -> None:
    json = {"Accept": "application/dicom+json"}
    bad_request(client.get("/dicomweb/studies?offset=99999999999999999999999", headers=json),
                "offset")
    bad_request(client.get("/dicomweb/series?SeriesNumber=99999999999999999999999999",
                           headers=json), "SeriesNumber", "IS")
    bad_request(client.get("/dicomweb/instances?Rows=70000", headers=json), "Rows", "US")
    for odd in ("limit=%C2%B2", "offset=1_0", "offset=-1"):  # "²" passes str.isdigit()
        bad_request(client.get(f"/dicomweb/studies?{odd}", headers=json), odd.split("=")[0])
    every = client.get("/dicomweb/studies", headers=json).get_json()
    huge = client.get("/dicomweb/studies?limit=99999999999999999999999", headers=json)
    assert huge.status_code == 200 and huge.get_json() == every  # reduced to the maximum


def test_fhir_paging_numbers_too_large_for_sql_are_400_operation_outcomes(client) -> None:
    for path in ("Patient?_offset=99999999999999999999999",
                 "ImagingStudy?_offset=99999999999999999999999",
                 "Observation?_count=%C2%B2",
                 "Patient/COVID-19-AR-00000000/$everything?_offset=99999999999999999999999"):
        r = client.get(f"/fhir/{path}")
        assert r.status_code == 400, (path, r.data[:300])
        body = r.get_json()
        resources.validate(body)
        issue = body["issue"][0]
        assert issue["code"] == "invalid" and issue["details"]["text"].startswith(
            "parameter: _"), (path, issue)
    big = client.get("/fhir/Patient?_count=99999999999999999999999")
    assert big.status_code == 200 and big.get_json()["total"] == 6


# --------------------------------------------------------------- #13 impossible dates
@pytest.mark.parametrize("query, attribute", [
    ("StudyDate=20201399", "StudyDate"), ("StudyDate=20210229", "StudyDate"),
    ("StudyDate=20200101-20201232", "StudyDate"), ("StudyTime=25-99", "StudyTime"),
    ("StudyTime=2360", "StudyTime"), ("PatientBirthDate=19001301", "PatientBirthDate")])
def test_an_impossible_date_or_time_is_400_naming_it(client, query, attribute) -> None:
    r = client.get(f"/dicomweb/studies?{query}", headers={"Accept": "application/dicom+json"})
    bad_request(r, attribute, "not a valid")


def test_possible_dates_and_times_still_match(client) -> None:
    json = {"Accept": "application/dicom+json"}
    every = client.get("/dicomweb/studies", headers=json).get_json()
    day = every[0]["00080020"]["Value"][0]
    for query in (f"StudyDate={day}", f"StudyDate={day[:4]}0101-{day[:4]}1231",
                  "StudyDate=20200229-", "StudyTime=000000-235960"):
        r = client.get(f"/dicomweb/studies?{query}", headers=json)
        assert r.status_code == 200, (query, r.data[:200])
    assert len(client.get(f"/dicomweb/studies?StudyTime=000000-235960", headers=json)
               .get_json()) == len(every)


@pytest.mark.timeout(120)
def test_dimse_c_find_refuses_an_impossible_date_too(loaded_data_dir, artifacts_dir,
                                                     tmp_path) -> None:
    scp = start_scp(loaded_data_dir, artifacts_dir / "logs")
    try:
        keys = {"QueryRetrieveLevel": "STUDY", "StudyDate": "20201399", "StudyInstanceUID": ""}
        found = dcmtk.findscu("TCIAGW", scp.port, keys, tmp_path / "bad")
        assert not found.responses
        # 0xA900 (PS3.4 C.4.1.1.4), as DCMTK names it
        assert found.final_status == "Error: DataSetDoesNotMatchSOPClass", found.output[-2000:]
        keys["StudyDate"] = "20000101-20991231"
        assert dcmtk.findscu("TCIAGW", scp.port, keys, tmp_path / "good").responses
    finally:
        scp.proc.stop()


# ---------------------------------------------------------------- frames (decided)
def test_a_frame_list_is_bounded_by_the_instance_and_the_setting(client, settings,
                                                                 images) -> None:
    cr = images[0]
    assert cr.number_of_frames == 1
    bad_request(client.get(rs_url(cr) + "/frames/1,1,1", headers={"Accept": FRAMES}),
                "frames", "more than once")
    bad_request(client.get(rs_url(cr) + "/frames/" + ",".join(["1"] * 1500),
                           headers={"Accept": FRAMES}), "frames")
    bad_request(client.get(rs_url(cr) + "/frames/1,2", headers={"Accept": FRAMES}),
                "frames", "has 1")
    bad_request(client.get(rs_url(cr) + "/frames/%C2%B9", headers={"Accept": FRAMES}),
                "frames")
    assert client.get(rs_url(cr) + "/frames/1", headers={"Accept": FRAMES}).status_code == 200
    two = create_app(settings.replace(max_frames_per_request=2)).test_client()
    bad_request(two.get(rs_url(cr) + "/frames/1,2,3", headers={"Accept": FRAMES}), "frames",
                "MAX_FRAMES_PER_REQUEST")


# ---------------------------------------------------------------------- limits clamp
def test_qido_limit_is_clamped_to_the_setting_with_the_ps3_18_warning(settings) -> None:
    two = create_app(settings.replace(max_qido_results=2)).test_client()
    json = {"Accept": "application/dicom+json"}
    r = two.get("/dicomweb/studies?limit=10", headers=json)
    assert r.status_code == 200 and len(r.get_json()) == 2
    assert "Additional results can be requested" in r.headers["Warning"]
    every = len(create_app(settings).test_client().get("/dicomweb/studies", headers=json)
                .get_json())
    rest = two.get(f"/dicomweb/studies?limit=10&offset={every - 2}", headers=json)
    assert len(rest.get_json()) == 2 and "Warning" not in rest.headers  # nothing beyond


def test_fhir_count_is_reduced_to_the_setting_and_says_so(settings) -> None:
    two = create_app(settings.replace(max_fhir_count=2)).test_client()
    bundle = two.get("/fhir/Patient?_count=5").get_json()
    resources.validate(bundle)
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    notes = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(matches) == 2 and bundle["total"] == 6
    assert "MAX_FHIR_COUNT" in notes[0]["issue"][0]["diagnostics"]
    assert any(link["relation"] == "next" for link in bundle["link"])
    everything = two.get(f"/fhir/Patient/{matches[0]['resource']['id']}/$everything?_count=50")
    assert len(everything.get_json()["entry"]) == 2


# ------------------------------------------------------ #14, #15 FHIR paths and methods
def test_a_path_that_names_no_fhir_resource_is_404(gateway_server) -> None:
    for path in ("ImagingStudy/..%2f..%2f", "Patient/..%2f..%2fmetadata", "Patient/x/y/z",
                 "Patient/"):
        r = requests.get(f"{gateway_server.url}/fhir/{path}", timeout=30)
        assert outcome(r, 404)["code"] == "not-found", path
    r = requests.get(f"{gateway_server.url}/fhir/Patient/x/_history", timeout=30)
    assert outcome(r, 405)["code"] == "not-supported"  # a FHIR interaction we lack


def test_another_method_on_metadata_is_405_with_allow(gateway_server) -> None:
    for method in ("DELETE", "PUT", "POST"):
        r = requests.request(method, f"{gateway_server.url}/fhir/metadata", timeout=30)
        assert outcome(r, 405)["code"] == "not-supported", method
        assert r.headers["Allow"] == "GET"


def test_if_none_match_star_on_an_existing_resource_is_304(gateway_server) -> None:
    bundle = requests.get(f"{gateway_server.url}/fhir/Patient?_count=1", timeout=30).json()
    pid = bundle["entry"][0]["resource"]["id"]
    r = requests.get(f"{gateway_server.url}/fhir/Patient/{pid}",
                     headers={"If-None-Match": "*"}, timeout=30)
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"].startswith('W/"')
    listed = requests.get(f"{gateway_server.url}/fhir/Patient/{pid}",
                          headers={"If-None-Match": f'"nope", {r.headers["ETag"]}'}, timeout=30)
    assert listed.status_code == 304
    other = requests.get(f"{gateway_server.url}/fhir/Patient/{pid}",
                         headers={"If-None-Match": 'W/"nope"'}, timeout=30)
    assert other.status_code == 200
    missing = requests.get(f"{gateway_server.url}/fhir/Patient/COVID-19-AR-0",
                           headers={"If-None-Match": "*"}, timeout=30)
    assert outcome(missing, 404)["code"] == "not-found"
