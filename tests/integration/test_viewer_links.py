"""Every FHIR ImagingStudy carries a link that opens it in the bundled viewer."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from gateway.links import VIEWER_EXTENSION_URL


def test_imaging_study_carries_its_viewer_link(gateway_server) -> None:
    bundle = requests.get(gateway_server.url + "/fhir/ImagingStudy", timeout=10).json()
    studies = [e["resource"] for e in bundle["entry"]]
    assert studies
    for study in studies:
        (ext,) = [e for e in study["extension"] if e["url"] == VIEWER_EXTENSION_URL]
        url = urlsplit(ext["valueUrl"])
        assert f"{url.scheme}://{url.netloc}" == gateway_server.url
        assert url.path == "/viewer/viewer"
        assert parse_qs(url.query) == {"StudyInstanceUIDs": [study["id"]]}
        assert study["identifier"][0]["value"] == f"urn:oid:{study['id']}"
