"""Two apps in one process keep their own caches: what one app served is never in the other's
memory (no cache is a module global), and each answers with its own public base."""
from __future__ import annotations

import gzip
from pathlib import Path

from gateway import create_app
from gateway.config import Settings
from gateway.dicomweb.caches import EXTENSION as DICOMWEB


def app_on(data: Path, base: str):
    return create_app(Settings().replace(data_dir=data, public_url=base, log_level="WARNING"))


def dicomweb_sizes(app) -> dict[str, int]:
    caches = app.extensions[DICOMWEB]
    return {"gzip": len(caches.gzip), "metadata": len(caches.metadata),
            "luts": len(caches.render.luts), "layouts": len(caches.render.layouts),
            "openapi": len(caches.openapi)}


def fhir_sizes(app) -> dict[str, int]:
    service = app.extensions["tcia_fhir"]
    return {"results": len(service.results), "capabilities": len(service.capabilities)}


def test_what_one_app_served_stays_in_its_own_caches(loaded_data_dir: Path) -> None:
    one, two = app_on(loaded_data_dir, "http://one.example"), app_on(loaded_data_dir,
                                                                      "http://two.example")
    client = one.test_client()
    series = client.get("/dicomweb/series?Modality=CT").get_json()[0]
    study, uid = series["0020000D"]["Value"][0], series["0020000E"]["Value"][0]
    meta = client.get(f"/dicomweb/studies/{study}/series/{uid}/metadata",
                      headers={"Accept-Encoding": "gzip"})
    assert meta.status_code == 200 and meta.headers["Content-Encoding"] == "gzip"
    plain = client.get(f"/dicomweb/studies/{study}/series/{uid}/metadata").get_json()
    sop = plain[0]["00080018"]["Value"][0]
    rendered = client.get(f"/dicomweb/studies/{study}/series/{uid}/instances/{sop}/rendered")
    assert rendered.status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/fhir/Patient?_count=2").status_code == 200
    assert client.get("/fhir/Patient?_count=2").status_code == 200

    assert all(dicomweb_sizes(one).values()), dicomweb_sizes(one)
    assert fhir_sizes(one)["capabilities"] == 1
    assert not any(dicomweb_sizes(two).values()), dicomweb_sizes(two)
    assert not any(fhir_sizes(two).values()), fhir_sizes(two)
    assert one.extensions["tcia_gateway"]["archive"]._metadata is not \
        two.extensions["tcia_gateway"]["archive"]._metadata

    other = two.test_client()
    body = other.get(f"/dicomweb/studies/{study}/series/{uid}/metadata").get_data(as_text=True)
    assert "http://two.example/dicomweb/studies/" in body and "one.example" not in body
    assert other.get("/openapi.json").get_json()["servers"] == [{"url": "http://two.example"}]
    cap = other.get("/fhir/metadata").get_json()
    assert cap["implementation"]["url"] == "http://two.example/fhir"


def test_gzipped_search_answers_are_not_kept_only_stable_metadata(loaded_data_dir: Path) -> None:
    """A QIDO answer's ETag is its hash, new after every write: keeping its gzipped form
    filled the cache with dead bodies (worker RSS +10% in a 6-minute soak with STOWs)."""
    app = app_on(loaded_data_dir, "http://one.example")
    client, kept = app.test_client(), app.extensions[DICOMWEB].gzip
    for query in ("", "?limit=50", "?offset=5", "?ModalitiesInStudy=CR"):
        answer = client.get(f"/dicomweb/studies{query}", headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == 200 and answer.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(answer.get_data()) == \
            client.get(f"/dicomweb/studies{query}").get_data()
    assert len(kept) == 0
    series = client.get("/dicomweb/series?Modality=CT").get_json()[0]
    meta = client.get(f"/dicomweb/studies/{series['0020000D']['Value'][0]}/series/"
                      f"{series['0020000E']['Value'][0]}/metadata",
                      headers={"Accept-Encoding": "gzip"})
    assert meta.headers["Content-Encoding"] == "gzip" and len(kept) == 1
