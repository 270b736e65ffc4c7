"""QIDO-RS over HTTP as OHIF and browsers use it (PS3.18 10.6): the study list query,
paging with the Warning header, errors that name the parameter, negotiation, ETag/304,
gzip, CORS and links built from PUBLIC_URL or the proxy's forwarded host."""
from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests

from tests.support.procs import GatewayServer, start_gateway

OHIF_STUDY_LIST = {"limit": "101", "offset": "0", "fuzzymatching": "false",
                   "includefield": "00081030,00080060"}
OHIF_STUDY_TAGS = ("0020000D", "00080020", "00080030", "00080050", "00100010", "00100020",
                   "00100030", "00201208", "00081030", "00080061", "00080090")
OHIF_SERIES_TAGS = ("0020000E", "00080060", "00200011", "00201209", "00080021")


@pytest.fixture(scope="module")
def truth(small_cohort) -> dict[str, dict]:
    """StudyInstanceUID → description, instance count, series (from the files)."""
    out: dict[str, dict] = {}
    for path in Path(small_cohort.root).rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study = out.setdefault(ds.StudyInstanceUID, {"description": ds.StudyDescription,
                                                     "instances": 0, "series": set()})
        study["instances"] += 1
        study["series"].add(ds.SeriesInstanceUID)
    return out


def get(server: GatewayServer, path: str, params=None, **headers: str) -> requests.Response:
    return requests.get(f"{server.url}/dicomweb{path}", params=params, headers=headers, timeout=30)


def test_ohif_study_list(gateway_server, truth) -> None:
    r = get(gateway_server, "/studies", OHIF_STUDY_LIST, Accept="application/dicom+json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/dicom+json"
    rows = r.json()
    assert len(rows) == len(truth) and "Warning" not in r.headers
    for row in rows:
        assert set(OHIF_STUDY_TAGS) <= set(row)
        expected = truth[row["0020000D"]["Value"][0]]
        assert row["00081030"]["Value"] == [expected["description"]]  # comma includefield works
        assert row["00201208"]["Value"] == [expected["instances"]]
        assert row["00201206"]["Value"] == [len(expected["series"])]


def test_ohif_series_rows(gateway_server, truth) -> None:
    study = next(iter(truth))
    rows = get(gateway_server, f"/studies/{study}/series").json()
    assert {r["0020000E"]["Value"][0] for r in rows} == truth[study]["series"]
    for row in rows:
        assert set(OHIF_SERIES_TAGS) <= set(row)
        assert row["0020000D"]["Value"] == [study]  # parent keys travel along


def test_paging_is_stable_and_warns_when_cut(gateway_server, truth) -> None:
    full = [r["0020000D"]["Value"][0] for r in get(gateway_server, "/studies").json()]
    assert full == [r["0020000D"]["Value"][0] for r in get(gateway_server, "/studies").json()]
    pages, offset = [], 0
    while True:
        r = get(gateway_server, "/studies", {"limit": 4, "offset": offset})
        rows = [x["0020000D"]["Value"][0] for x in r.json()]
        more = offset + 4 < len(full)
        assert ("Warning" in r.headers) == more
        if more:
            warning = r.headers["Warning"]
            assert warning.startswith("299 ") and "Additional results" in warning
        pages += rows
        offset += 4
        if not more:
            break
    assert pages == full


def test_empty_result_is_200_with_an_empty_array(gateway_server) -> None:
    r = get(gateway_server, "/studies", {"PatientID": "NOBODY"})
    assert r.status_code == 200 and r.json() == []
    r = get(gateway_server, "/studies", {"offset": 10_000})
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize("params, name", [
    ({"NoSuchAttribute": "x"}, "NoSuchAttribute"),
    ({"StudyDate": "2020-13-45"}, "StudyDate"),
    ({"StudyInstanceUID": "not-a-uid"}, "StudyInstanceUID"),
    ({"limit": "-5"}, "limit"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"),
    ({"includefield": "NotAKeyword"}, "NotAKeyword"),
])
def test_bad_queries_are_400_naming_the_parameter(gateway_server, params, name) -> None:
    r = get(gateway_server, "/studies", params)
    assert r.status_code == 400
    body = r.json()
    assert name in body["message"] and body["attribute"] == name


def test_unknown_study_in_path_gives_empty_series_list(gateway_server) -> None:
    r = get(gateway_server, "/studies/1.2.3.4.5/series")
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize("accept, status", [
    ('multipart/related; type="application/dicom+xml"', 406),
    ('multipart/related; type="application/dicom+xml", application/dicom+json;q=0.5', 200),
    ("application/json", 200),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200),
])
def test_accept_negotiation(gateway_server, accept, status) -> None:
    r = get(gateway_server, "/studies", Accept=accept)
    assert r.status_code == status
    if status == 406:
        assert "application/dicom+json" in r.json()["message"]


def test_etag_and_if_none_match(gateway_server) -> None:
    r = get(gateway_server, "/studies")
    etag = r.headers["ETag"]
    again = get(gateway_server, "/studies", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = get(gateway_server, "/studies", {"PatientID": "x*"}, **{"If-None-Match": etag})
    assert other.status_code == 200


def test_gzip_only_when_asked(gateway_server) -> None:
    raw = requests.get(f"{gateway_server.url}/dicomweb/studies",
                       headers={"Accept-Encoding": "identity"}, stream=True)
    assert "Content-Encoding" not in raw.headers
    identity = raw.raw.read()
    packed = requests.get(f"{gateway_server.url}/dicomweb/studies",
                          headers={"Accept-Encoding": "gzip"}, stream=True)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.raw.read()) == identity
    assert packed.headers["ETag"] != raw.headers["ETag"]  # one ETag per representation
    assert "Accept-Encoding" in packed.headers["Vary"]


def test_cors_simple_and_preflight(gateway_server) -> None:
    r = get(gateway_server, "/studies", Origin="http://viewer.example")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]
    assert "Warning" in r.headers["Access-Control-Expose-Headers"]
    pre = requests.options(f"{gateway_server.url}/dicomweb/studies", headers={
        "Origin": "http://viewer.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "accept, authorization"})
    assert pre.status_code == 200
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    assert pre.headers["Access-Control-Allow-Headers"] == "accept, authorization"


@pytest.fixture(scope="module")
def proxied(loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    """Behind a proxy: forwarded host trusted, one allowed origin (read-only data)."""
    server = start_gateway(loaded_data_dir, artifacts_dir / "logs", workers=1,
                           env={"GATEWAY_TRUST_PROXY": "true",
                                "GATEWAY_CORS_ORIGINS": "https://ohif.example.org"})
    yield server
    server.stop()


def test_links_follow_the_forwarded_host_when_trusted(proxied) -> None:
    r = get(proxied, "/studies", {"limit": 1}, **{
        "X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/imaging"})
    url = r.json()[0]["00081190"]["Value"][0]
    assert url.startswith("https://pacs.example.org/imaging/dicomweb/studies/")
    plain = get(proxied, "/studies", {"limit": 1}).json()[0]["00081190"]["Value"][0]
    assert plain.startswith(proxied.url + "/dicomweb/studies/")


def test_cors_with_an_origin_list(proxied) -> None:
    good = get(proxied, "/studies", Origin="https://ohif.example.org")
    assert good.headers["Access-Control-Allow-Origin"] == "https://ohif.example.org"
    assert "Origin" in good.headers["Vary"]
    bad = get(proxied, "/studies", Origin="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in bad.headers
