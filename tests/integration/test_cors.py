"""CORS on every route a browser app on another origin uses (DICOMweb, WADO-URI, FHIR),
none on the same-origin viewer."""
from __future__ import annotations

import pytest
import requests

ORIGIN = {"Origin": "http://ehr-app.example"}


@pytest.mark.parametrize("path", ["/dicomweb/studies", "/fhir/metadata", "/fhir/Patient",
                                  "/openapi.json", "/healthz"])
def test_simple_requests_carry_cors_headers(gateway_server, path: str) -> None:
    r = requests.get(gateway_server.url + path, headers=ORIGIN, timeout=10)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]


def test_fhir_preflight_allows_the_requested_headers(gateway_server) -> None:
    r = requests.options(gateway_server.url + "/fhir/Observation", timeout=10, headers={
        **ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, prefer"})
    assert r.status_code == 200
    assert "GET" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"] == "authorization, prefer"


def test_viewer_is_same_origin_without_cors(gateway_server) -> None:
    r = requests.get(gateway_server.url + "/viewer/", headers=ORIGIN, timeout=10)
    assert "Access-Control-Allow-Origin" not in r.headers
