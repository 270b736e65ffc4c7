"""Two independent FHIR clients against the running server: fhirclient 4.4 (SMART, strict R4
parsing) and fhirpy 2.3. Each connects, searches every resource with every supported parameter
(following paging to the end), uses _include/_revinclude and $everything, and reads back what
it found. Then the walk a viewer makes: Patient -> ImagingStudy -> Endpoint -> /dicomweb."""
from __future__ import annotations

from typing import Callable

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.fhirsearch import FHIRSearch
from fhirpy import SyncFHIRClient

from gateway.fhir.search import PARAMS

TCIA = "https://www.cancerimagingarchive.net"


def _coding(concept: dict) -> str:
    c = concept["coding"][0]
    return f"{c['system']}|{c['code']}"


def _day(value: str) -> str:
    return "eq" + value[:10]


def _patient(r: dict) -> str:
    return (r.get("subject") or r.get("patient"))["reference"].split("/")[1]


# For each type: how to pick a reference resource, and the value of each parameter it must match.
CASES: dict[str, tuple[str, dict[str, Callable[[dict], str]]]] = {
    "Patient": ("Patient?gender=female", {
        "_id": lambda r: r["id"], "identifier": lambda r: f"{TCIA}|{r['id']}",
        "gender": lambda r: r["gender"], "deceased": lambda r: str(r.get("deceasedBoolean", False)).lower(),
        "address-postalcode": lambda r: r["address"][0]["postalCode"],
        "name": None, "birthdate": None, "race": None}),  # de-identified: no names, no birth dates
    "Condition": ("Condition?category=encounter-diagnosis", {
        "_id": lambda r: r["id"], "patient": _patient, "subject": lambda r: r["subject"]["reference"],
        "category": lambda r: _coding(r["category"][0]), "clinical-status": lambda r: "active",
        "verification-status": lambda r: "confirmed", "code": lambda r: _coding(r["code"]),
        "onset-date": lambda r: _day(r["onsetDateTime"])}),
    "Observation": ("Observation?code=http://loinc.org|39156-5&value-quantity=gt1", {
        "_id": lambda r: r["id"], "patient": _patient, "subject": lambda r: r["subject"]["reference"],
        "category": lambda r: "vital-signs", "code": lambda r: _coding(r["code"]),
        "status": lambda r: r["status"], "value-quantity": lambda r: f"ge{int(r['valueQuantity']['value'])}",
        "code-value-quantity": lambda r: f"{_coding(r['code'])}$ge{int(r['valueQuantity']['value'])}",
        "date": None, "value-concept": None, "code-value-concept": None, "derived-from": None,
        "part-of": None, "_content": None}),
    "DiagnosticReport": ("DiagnosticReport?status=final", {
        "_id": lambda r: r["id"], "patient": _patient, "subject": lambda r: r["subject"]["reference"],
        "category": lambda r: _coding(r["category"][0]), "code": lambda r: _coding(r["code"]),
        "date": lambda r: _day(r["effectiveDateTime"]), "status": lambda r: "final",
        "_content": lambda r: " ".join(r["conclusion"].split()[:2])}),
    "Encounter": ("Encounter?status=finished", {
        "_id": lambda r: r["id"], "patient": _patient, "subject": lambda r: r["subject"]["reference"],
        "class": lambda r: f"{r['class']['system']}|{r['class']['code']}",
        "type": lambda r: _coding(r["type"][0]), "status": lambda r: "finished",
        "date": None}),  # ICU stays carry no dates (the sheet has none)
    "MolecularSequence": ("MolecularSequence?type=rna", {
        "_id": lambda r: r["id"], "patient": _patient, "type": lambda r: r["type"]}),
    "ImagingStudy": ("ImagingStudy?modality=CT", {
        "_id": lambda r: r["id"], "patient": _patient, "subject": lambda r: r["subject"]["reference"],
        "identifier": lambda r: f"urn:dicom:uid|{r['identifier'][0]['value']}",
        "started": lambda r: _day(r["started"]), "modality": lambda r: _coding({"coding": r["modality"]})}),
    "Endpoint": ("Endpoint", {
        "_id": lambda r: r["id"], "connection-type": lambda r: _coding({"coding": [r["connectionType"]]}),
        "status": lambda r: r["status"]}),
    "ResearchStudy": ("ResearchStudy", {
        "_id": lambda r: r["id"], "identifier": lambda r: f"https://doi.org|{r['identifier'][0]['value']}",
        "title": lambda r: r["title"].split()[0], "status": lambda r: r["status"]}),
    "ResearchSubject": ("ResearchSubject", {
        "_id": lambda r: r["id"], "individual": lambda r: r["individual"]["reference"],
        "patient": lambda r: r["individual"]["reference"].split("/")[1],
        "study": lambda r: r["study"]["reference"],
        "identifier": lambda r: f"{TCIA}|{r['identifier'][0]['value']}",
        "status": lambda r: r["status"]}),
}
FIO2 = "Observation?code=http://loinc.org|3150-0&derived-from:missing=false"
EXTRA = {"Observation": {"date": ("Observation?category=imaging", lambda r: _day(r["effectiveDateTime"])),
                         "value-concept": ("Observation?code=94500-6",
                                           lambda r: _coding(r["valueCodeableConcept"])),
                         "code-value-concept": ("Observation?code=94500-6", lambda r: (
                             f"{_coding(r['code'])}${_coding(r['valueCodeableConcept'])}")),
                         "derived-from": (FIO2, lambda r: r["derivedFrom"][0]["reference"]),
                         "part-of": (FIO2, lambda r: r["partOf"][0]["reference"].split("/")[1]),
                         "_content": ("Observation?category=imaging",
                                      lambda r: " ".join(r["valueString"].split()[:2]).upper())},
         "Patient": {"race": ("Patient?race:missing=false", lambda r: next(
             e["valueCoding"]["code"] for x in r["extension"] if x["url"].endswith("us-core-race")
             for e in x["extension"] if e["url"] == "ombCategory"))}}


def test_cases_cover_every_advertised_parameter():
    assert {k: set(v[1]) for k, v in CASES.items()} == {k: set(p) for k, p in PARAMS.items()}


@pytest.fixture(scope="module")
def base(gateway_server) -> str:
    return gateway_server.url + "/fhir"


@pytest.fixture(scope="module")
def smart(base):
    fhir = smart_client.FHIRClient(settings={"app_id": "tcia-gateway-tests", "api_base": base})
    fhir.server.get_capability()  # strict parse of /metadata
    return fhir


@pytest.fixture(scope="module")
def fhirpy(base) -> SyncFHIRClient:
    return SyncFHIRClient(base)


def first(base: str, query: str) -> dict:
    bundle = requests.get(f"{base}/{query}", timeout=30).json()
    if not bundle.get("entry"):
        pytest.skip(f"the small cohort has no {query}")
    return bundle["entry"][0]["resource"]


def smart_search(smart, kind: str, params: dict) -> list[dict]:
    """fhirclient: build the search, follow every next link, parse every page strictly."""
    model = FHIRElementFactory.instantiate(kind, None).__class__
    search = FHIRSearch(model, {**params, "_count": "2"})
    found = []
    for page in search.perform_iter(smart.server):
        found += [e.resource.as_json() for e in page.entry or [] if e.search.mode == "match"]
    return found


def fhirpy_search(client: SyncFHIRClient, kind: str, params: dict) -> list[dict]:
    return [r.serialize() for r in client.resources(kind).search(**params).limit(2).fetch_all()]


@pytest.mark.parametrize("kind", list(CASES))
def test_fhirclient_searches_every_parameter_and_reads_back(smart, base, kind):
    query, params = CASES[kind]
    reference = first(base, query)
    for name, value_of in params.items():
        source = reference
        if value_of is None and name in EXTRA.get(kind, {}):
            source, value_of = first(base, EXTRA[kind][name][0]), EXTRA[kind][name][1]
        if value_of is None:
            assert smart_search(smart, kind, {name: "zzz" if name == "name" else "ge1900"}) == []
            continue
        found = smart_search(smart, kind, {name: value_of(source)})
        assert source["id"] in [r["id"] for r in found], (kind, name, value_of(source))
    read = FHIRElementFactory.instantiate(kind, None).__class__.read(reference["id"], smart.server)
    assert read.as_json()["id"] == reference["id"]


@pytest.mark.parametrize("kind", list(CASES))
def test_fhirpy_searches_every_parameter_and_reads_back(fhirpy, base, kind):
    query, params = CASES[kind]
    reference = first(base, query)
    for name, value_of in params.items():
        source = reference
        if value_of is None and name in EXTRA.get(kind, {}):
            source, value_of = first(base, EXTRA[kind][name][0]), EXTRA[kind][name][1]
        if value_of is None:
            assert fhirpy.resources(kind).search(**{name: "ge1900" if name != "name" else "zzz"}).count() == 0
            continue
        found = fhirpy_search(fhirpy, kind, {name: value_of(source)})
        assert source["id"] in [r["id"] for r in found], (kind, name, value_of(source))
    again = fhirpy.reference(kind, reference["id"]).to_resource()
    assert again.serialize()["id"] == reference["id"]


def test_paging_to_the_end_and_count(smart, fhirpy, base):
    total = requests.get(f"{base}/Observation?_summary=count", timeout=30).json()["total"]
    assert fhirpy.resources("Observation").count() == total
    via_fhirpy = fhirpy_search(fhirpy, "Observation", {})
    via_smart = smart_search(smart, "Observation", {})
    assert len(via_fhirpy) == len(via_smart) == total
    assert sorted(r["id"] for r in via_fhirpy) == sorted(r["id"] for r in via_smart)
    assert fhirpy.resources("Patient").search(gender="none").fetch_all() == []


def test_include_revinclude_and_everything(smart, fhirpy, base):
    pid = first(base, "Patient")["id"]
    search = FHIRSearch(FHIRElementFactory.instantiate("Observation", None).__class__,
                        {"patient": pid}).include("subject")
    bundle = next(search.perform_iter(smart.server))
    assert {(e.resource.resource_type, e.search.mode) for e in bundle.entry} == {
        ("Observation", "match"), ("Patient", "include")}
    # fhirpy's fetch_all() keeps the searched type only: the raw Bundle shows the included ones
    mixed = fhirpy.resources("ImagingStudy").search(patient=pid).include("ImagingStudy", "endpoint").fetch_raw()
    assert {e["resource"]["resourceType"] for e in mixed["entry"]} == {"ImagingStudy", "Endpoint"}
    rev = fhirpy.resources("Patient").search(_id=pid).revinclude("Condition", "patient").fetch_raw()
    assert {e["resource"]["resourceType"] for e in rev["entry"]} == {"Patient", "Condition"}

    everything = Bundle(smart.server.request_json(f"Patient/{pid}/$everything"))  # strict parse
    kinds = {e.resource.resource_type for e in everything.entry}
    assert {"Patient", "Observation", "Condition", "ImagingStudy", "Endpoint"} <= kinds
    via_fhirpy = fhirpy.resource("Patient", id=pid).execute("$everything", method="get")
    assert via_fhirpy["total"] == everything.total == len(everything.entry)


def test_walk_from_patient_to_the_study_metadata(smart, base):
    """The walk a viewer makes: Patient -> ImagingStudy (+Endpoint) -> /dicomweb -> metadata."""
    from fhirclient.models.imagingstudy import ImagingStudy
    from fhirclient.models.patient import Patient
    patient = Patient.read(first(base, "ImagingStudy")["subject"]["reference"].split("/")[1], smart.server)
    bundle = next(ImagingStudy.where(struct={"patient": patient.id}).include("endpoint")
                  .perform_iter(smart.server))
    studies = [e.resource for e in bundle.entry if e.resource.resource_type == "ImagingStudy"]
    endpoints = {f"Endpoint/{e.resource.id}": e.resource for e in bundle.entry
                 if e.resource.resource_type == "Endpoint"}
    assert studies
    study = studies[0]
    endpoint = endpoints[study.endpoint[0].reference]
    assert endpoint.connectionType.code == "dicom-wado-rs"
    uid = study.identifier[0].value.removeprefix("urn:oid:")
    metadata = DICOMwebClient(url=endpoint.address).retrieve_study_metadata(uid)
    assert len(metadata) == study.numberOfInstances
    assert {m["0020000D"]["Value"][0] for m in metadata} == {uid}
    assert {m["00100020"]["Value"][0] for m in metadata} == {patient.id}
    series = {m["0020000E"]["Value"][0] for m in metadata}
    assert series == {s.uid for s in study.series}
