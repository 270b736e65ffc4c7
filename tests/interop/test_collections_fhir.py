"""Collections as data: GET /collections (counts from the index, facts from idc-index-data's
collections_index), one FHIR ResearchStudy per collection and one ResearchSubject per patient
and collection (validated by fhir.resources and read by fhirclient), Patients made from DICOM
for subjects without a sheet, and ``Patient?_has:ResearchSubject:individual:study=...``."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests
from fhir.resources.R4B.researchstudy import ResearchStudy as R4BStudy
from fhir.resources.R4B.researchsubject import ResearchSubject as R4BSubject
from fhirclient import client as smart_client
from fhirclient.models.patient import Patient as SmartPatient
from fhirclient.models.researchstudy import ResearchStudy as SmartStudy
from fhirclient.models.researchsubject import ResearchSubject as SmartSubject

from gateway.cli import do_import
from gateway.config import Settings
from tests.support.dicomfiles import make_file
from tests.support.procs import GatewayServer, start_gateway

AR, RICORD = "COVID-19-AR", "MIDRC-RICORD-1C"
SUBJECTS = {AR: ["COVID-19-AR-1", "COVID-19-AR-2"], RICORD: ["MIDRC-RICORD-1C-1"]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           artifacts_dir: Path) -> Iterator[GatewayServer]:
    src, data = tmp_path_factory.mktemp("cf-src"), tmp_path_factory.mktemp("cf-data")
    env = {}
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database("cf" + uuid.uuid4().hex[:10])
        env["GATEWAY_DATABASE_URL"] = url
    n = 0
    for coll, pids in SUBJECTS.items():
        for pid in pids:
            for study in ("S1", "S2"):
                n += 1
                make_file(src / f"{n}.dcm", patient=pid, study=f"{pid}-{study}", sop=str(n),
                          series=f"{pid}-{study}-1", collection=coll, PatientSex="F")
    settings = Settings().replace(data_dir=data, database_url=env.get("GATEWAY_DATABASE_URL", ""))
    assert do_import(settings, [src], []).new == n
    again = do_import(settings, [src], [])  # idempotent: nothing new, no new versions
    assert again.new == 0
    gw = start_gateway(data, artifacts_dir / "logs", workers=1, env=env)
    yield gw
    gw.stop()


def fhir(server: GatewayServer, query: str) -> dict:
    r = requests.get(f"{server.url}/fhir/{query}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_collections_listing(server: GatewayServer) -> None:
    r = requests.get(f"{server.url}/collections", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    by_name = {c["name"]: c for c in r.json()}
    assert set(by_name) == {AR, RICORD}
    ar, ricord = by_name[AR], by_name[RICORD]
    assert ar["counts"] == {"patients": 2, "studies": 4, "series": 4, "instances": 4}
    assert ricord["counts"] == {"patients": 1, "studies": 2, "series": 2, "instances": 2}
    assert ar["doi"] == "10.7937/tcia.2020.py71-5978" and ar["subjects"] == 105
    assert ar["licence"]["short"] == "CC BY 4.0"
    assert ricord["doi"] == "10.7937/91ah-v663" and ricord["subjects"] == 361
    assert ricord["licence"]["short"] == "CC BY-NC 4.0"
    assert "<i>" not in ar["citation"] and "Desai" in ar["citation"]
    assert ar["dicomweb"] == f"{server.url}/collections/{AR}/dicomweb"
    assert requests.get(ar["dicomweb"] + "/studies", timeout=30).status_code == 200


def test_research_study_per_collection(server: GatewayServer) -> None:
    bundle = fhir(server, "ResearchStudy")
    studies = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert set(studies) == {AR, RICORD} and bundle["total"] == 2
    for study in studies.values():
        R4BStudy.model_validate(study)
    ar = studies[AR]
    assert ar["identifier"][0] == {"system": "https://doi.org", "type": {"text": "DOI"},
                                   "value": "10.7937/tcia.2020.py71-5978"}
    assert ar["title"].startswith("Chest Imaging with Clinical and Genomic Correlates")
    citation, licence = ar["relatedArtifact"]
    assert citation["type"] == "citation" and "Desai" in citation["citation"]
    assert licence["url"] == "https://creativecommons.org/licenses/by/4.0/"
    assert ar["description"].startswith("Radiology imaging")
    found = fhir(server, "ResearchStudy?identifier=https://doi.org|10.7937/91ah-v663")
    assert [e["resource"]["id"] for e in found["entry"]] == [RICORD]


def test_research_subjects_and_has(server: GatewayServer) -> None:
    subjects = fhir(server, "ResearchSubject?_count=50")
    assert subjects["total"] == 3
    for entry in subjects["entry"]:
        R4BSubject.model_validate(entry["resource"])
    for coll, pids in SUBJECTS.items():
        has = fhir(server, f"Patient?_has:ResearchSubject:individual:study=ResearchStudy/{coll}")
        assert sorted(e["resource"]["id"] for e in has["entry"]) == sorted(pids)
        count = fhir(server, f"Patient?_has:ResearchSubject:individual:study=ResearchStudy/{coll}"
                             "&_summary=count")
        assert count["total"] == len(pids)
    ricord_patient = fhir(server, "Patient/MIDRC-RICORD-1C-1")
    assert ricord_patient["gender"] == "female"
    assert ricord_patient["meta"]["tag"][0]["code"] == RICORD
    assert ricord_patient["meta"]["versionId"] == "1"  # the second import changed nothing


def test_fhirclient_reads_them(server: GatewayServer) -> None:
    smart = smart_client.FHIRClient(settings={"app_id": "tcia-gateway-tests",
                                              "api_base": f"{server.url}/fhir"})
    smart.server.get_capability()
    study = SmartStudy.read(AR, smart.server)
    assert study.identifier[0].value == "10.7937/tcia.2020.py71-5978"
    assert study.relatedArtifact[0].type == "citation"
    subjects = SmartSubject.where({"study": f"ResearchStudy/{RICORD}"}).perform_resources(
        smart.server)
    assert [s.individual.reference for s in subjects] == ["Patient/MIDRC-RICORD-1C-1"]
    patients = SmartPatient.where({"_has:ResearchSubject:individual:study":
                                   f"ResearchStudy/{AR}"}).perform_resources(smart.server)
    assert sorted(p.id for p in patients) == SUBJECTS[AR]


def _collection_parts(study: dict) -> tuple[str | None, dict[str, dict]]:
    """The ResearchStudy reference and the related artifacts (by type) of an ImagingStudy."""
    research = [e["valueReference"]["reference"] for e in study.get("extension", [])
                if e["url"].endswith("/workflow-researchStudy")]
    artifacts = {e["valueRelatedArtifact"]["type"]: e["valueRelatedArtifact"]
                 for e in study.get("extension", []) if e["url"].endswith("/workflow-relatedArtifact")}
    return (research[0] if len(research) == 1 else None), artifacts


def test_every_imaging_study_tells_its_collection_and_licence(server: GatewayServer) -> None:
    """Search (one SQL statement), read and $everything (the archive path) give the same
    ImagingStudy: its ResearchStudy, the collection's citation and licence, a tag."""
    from fhir.resources.R4B.imagingstudy import ImagingStudy as R4BImaging
    licences = {AR: ("CC BY 4.0", "creativecommons.org/licenses/by/4.0"),
                RICORD: ("CC BY-NC 4.0", "creativecommons.org/licenses/by-nc/4.0")}
    bundle = fhir(server, "ImagingStudy?_count=50")
    assert bundle["total"] == 6
    for entry in bundle["entry"]:
        study = entry["resource"]
        R4BImaging.model_validate(study)
        pid = study["subject"]["reference"].split("/")[1]
        coll = AR if pid.startswith(AR) else RICORD
        research, artifacts = _collection_parts(study)
        assert research == f"ResearchStudy/{coll}"
        short, url = licences[coll]
        assert artifacts["documentation"]["label"] == "Licence"
        assert f"({short})" in artifacts["documentation"]["display"]
        assert url in artifacts["documentation"]["url"]
        assert artifacts["citation"]["citation"]
        assert {"system": "https://www.cancerimagingarchive.net", "code": coll} == {
            k: v for k, v in study["meta"]["tag"][0].items() if k != "display"}
        read = fhir(server, f"ImagingStudy/{study['id']}")
        assert read == study  # the archive path builds the same resource
    everything = fhir(server, f"Patient/{SUBJECTS[RICORD][0]}/$everything")
    studies = [e["resource"] for e in everything["entry"]
               if e["resource"]["resourceType"] == "ImagingStudy"]
    assert len(studies) == 2
    assert all(_collection_parts(s)[0] == f"ResearchStudy/{RICORD}" for s in studies)
