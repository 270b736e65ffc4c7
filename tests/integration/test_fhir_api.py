"""FHIR REST semantics against the real server (gunicorn on the 6-patient cohort)."""
from __future__ import annotations

import requests
import pytest

from gateway.clinical import resources
from gateway.fhir.search import PARAMS

FHIR_JSON = "application/fhir+json"


def get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{server.url}/fhir/{path}", timeout=30, **kwargs)


def outcome_of(response: requests.Response) -> str:
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    resources.validate(body)
    return " ".join(i.get("diagnostics", "") + " " + i.get("details", {}).get("text", "")
                    for i in body["issue"])


@pytest.fixture(scope="module")
def patients(gateway_server) -> list[dict]:
    bundle = get(gateway_server, "Patient?_count=100").json()
    return [e["resource"] for e in bundle["entry"]]


def test_capability_statement_lists_exactly_what_is_supported(gateway_server):
    response = get(gateway_server, "metadata")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(FHIR_JSON)
    cap = response.json()
    resources.validate(cap)
    assert cap["fhirVersion"] == "4.0.1"
    listed = {r["type"]: {p["name"] for p in r["searchParam"]} for r in cap["rest"][0]["resource"]}
    # every parameter, _sort everywhere, _has where something refers to the type
    assert listed == {kind: set(params) | {"_sort"} | ({"_has"} if kind in ("Patient", "ImagingStudy", "ResearchStudy")
                                                      else set()) for kind, params in PARAMS.items()}
    patient = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient")
    assert patient["operation"][0]["name"] == "everything"


@pytest.mark.parametrize("path", ["Foo", "Foo/1", "Medication", "Medication?code=x"])
def test_unknown_resource_type_is_404(gateway_server, path):
    response = get(gateway_server, path)
    assert response.status_code == 404
    assert path.split("/")[0].split("?")[0] in outcome_of(response)


@pytest.mark.parametrize("query, named", [
    ("Observation?foo=1", "foo"), ("Observation?date=yesterday", "date"),
    ("Observation?value-quantity=lots", "value-quantity"), ("Patient?_count=-1", "_count"),
    ("Condition?code:fuzzy=x", "code:fuzzy"), ("Observation?_include=Observation:performer", "_include"),
    ("Patient?gender:missing=perhaps", "gender:missing"), ("Observation?patient=Observation/1", "patient"),
    ("Observation?patient.foo=1", "patient.foo"), ("Patient?gender.text=x", "gender.text"),
    ("Patient?_has:Condition:patient=x", "_has:Condition:patient"),
    ("Patient?_has:Observation:derived-from:code=x", "_has:Observation:derived-from:code"),
    ("ImagingStudy?patient._has:Condition:subject:code:fuzzy=x", "patient._has:Condition:subject:code:fuzzy"),
    ("Observation?derived-from.modality=CT", "derived-from.modality"), ("Patient?_sort=-zzz", "_sort"),
    ("Observation?_sort=code-value-quantity", "_sort"), ("Observation?code-value-quantity=39156-5", "code-value-quantity"),
    ("Observation?code-value-quantity=39156-5$lots", "code-value-quantity"),
])
def test_unknown_or_malformed_parameter_is_400_naming_it(gateway_server, query, named):
    response = get(gateway_server, query)
    assert response.status_code == 400
    assert named in outcome_of(response)


def test_lenient_handling_ignores_and_reports_unknown_parameters(gateway_server):
    response = get(gateway_server, "Patient?bogus=1&gender=female",
                   headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200
    bundle = response.json()
    resources.validate(bundle)
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1 and "bogus" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    matches = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert matches and all(p["gender"] == "female" for p in matches)
    self_link = next(l["url"] for l in bundle["link"] if l["relation"] == "self")
    assert "bogus" not in self_link and "gender=female" in self_link


def test_unknown_id_is_404(gateway_server):
    for path in ("Patient/COVID-19-AR-00000000", "ImagingStudy/1.2.3.4", "Endpoint/nope",
                 "Patient/COVID-19-AR-00000000/$everything"):
        response = get(gateway_server, path)
        assert response.status_code == 404, path
        assert "not known" in outcome_of(response)


@pytest.mark.parametrize("method, path", [("POST", "Patient"), ("PUT", "Patient/x"),
                                          ("DELETE", "Observation/x"), ("PATCH", "Condition/x"),
                                          ("GET", "Patient/x/_history"), ("POST", "")])
def test_unsupported_interaction_is_405(gateway_server, method, path):
    response = requests.request(method, f"{gateway_server.url}/fhir/{path}", json={}, timeout=30)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert "not supported" in outcome_of(response)


def test_xml_is_not_acceptable(gateway_server):
    assert get(gateway_server, "Patient?_format=xml").status_code == 406
    response = get(gateway_server, "Patient", headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 406 and "JSON only" in outcome_of(response)


def test_read_has_version_etag_and_last_updated(gateway_server, patients):
    pid = patients[0]["id"]
    response = get(gateway_server, f"Patient/{pid}")
    assert response.status_code == 200
    patient = response.json()
    resources.validate(patient)
    assert response.headers["ETag"] == f'W/"{patient["meta"]["versionId"]}"'
    assert patient["meta"]["lastUpdated"].endswith("Z")
    again = get(gateway_server, f"Patient/{pid}", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_elements_and_summary(gateway_server):
    bundle = get(gateway_server, "Patient?_elements=gender").json()
    for entry in bundle["entry"]:
        patient = entry["resource"]
        assert set(patient) <= {"resourceType", "id", "meta", "gender"}
        assert any(t["code"] == "SUBSETTED" for t in patient["meta"]["tag"])
    count = get(gateway_server, "Patient?_summary=count").json()
    assert count["total"] == 6 and "entry" not in count
    zero = get(gateway_server, "Observation?_count=0").json()
    assert zero["total"] > 0 and "entry" not in zero
    summary = get(gateway_server, "Observation?_summary=true&_count=3").json()
    assert all("component" in e["resource"] or "status" in e["resource"] for e in summary["entry"])


def test_paging_follows_next_links_from_public_url_to_the_end(gateway_server):
    first = get(gateway_server, "Observation?_count=7").json()
    total, seen, page, pages = first["total"], [], first, 0
    while True:
        pages += 1
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
        if not nxt:
            break
        assert nxt[0].startswith(gateway_server.url + "/fhir/Observation?")
        page = requests.get(nxt[0], timeout=30).json()
    assert len(seen) == total == len(set(seen)) and pages == -(-total // 7)


def test_patient_everything_reaches_all_of_a_patients_data(gateway_server, patients):
    pid = patients[0]["id"]
    bundle = get(gateway_server, f"Patient/{pid}/$everything").json()
    resources.validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "Patient" and bundle["total"] == len(kinds)
    studies = get(gateway_server, f"ImagingStudy?patient={pid}").json()["total"]
    observations = get(gateway_server, f"Observation?patient={pid}&_summary=count").json()["total"]
    assert kinds.count("ImagingStudy") == studies > 0 and kinds.count("Endpoint") == 1
    assert kinds.count("Observation") == observations > 0 and "Condition" in kinds
    typed = get(gateway_server, f"Patient/{pid}/$everything?_type=Condition").json()
    assert {e["resource"]["resourceType"] for e in typed["entry"]} == {"Condition"}


def test_includes_and_revincludes(gateway_server, patients):
    pid = patients[0]["id"]
    bundle = get(gateway_server, f"Observation?patient={pid}&_include=Observation:patient").json()
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [(r["resourceType"], r["id"]) for r in included] == [("Patient", pid)]
    studies = get(gateway_server, f"ImagingStudy?patient={pid}&_include=ImagingStudy:endpoint").json()
    endpoint = [e["resource"] for e in studies["entry"] if e["search"]["mode"] == "include"]
    assert endpoint[0]["address"] == gateway_server.url + "/dicomweb"
    rev = get(gateway_server, f"Patient?_id={pid}&_revinclude=Condition:patient").json()
    assert {e["resource"]["resourceType"] for e in rev["entry"] if e["search"]["mode"] == "include"} == {"Condition"}


@pytest.mark.parametrize("query, check", [
    ("Observation?code=http://loinc.org|39156-5&value-quantity=gt10", lambda r: r["valueQuantity"]["value"] > 10),
    ("Observation?code=39156-5&value-quantity=lt10", None),
    ("Observation?category=imaging&date=ge2000-01-01", lambda r: r["effectiveDateTime"] >= "2000"),
    ("Observation?category=imaging&date=lt1900", None),
    ("Condition?code=http://hl7.org/fhir/sid/icd-10-cm|U07.1&clinical-status=active",
     lambda r: any(c["code"] == "U07.1" for c in r["code"]["coding"])),
    ("Condition?category=encounter-diagnosis&onset-date=ge2000", lambda r: r["onsetDateTime"] >= "2000"),
    ("Patient?gender=female", lambda r: r["gender"] == "female"),
    ("Patient?identifier=https://www.cancerimagingarchive.net|", lambda r: r["identifier"]),
    ("ImagingStudy?modality=CT", lambda r: any(m["code"] == "CT" for m in r["modality"])),
    ("ImagingStudy?started=ge2000-01-01&started=le2100", lambda r: "2000" <= r["started"] <= "2100"),
])
def test_search_parameters_filter(gateway_server, query, check):
    bundle = get(gateway_server, query + "&_count=100").json()
    found = [e["resource"] for e in bundle.get("entry", [])]
    if check is None:
        assert bundle["total"] == 0 and not found
    else:
        assert found and all(check(r) for r in found), query


def test_every_resource_the_cohort_produces_validates(gateway_server, patients):
    for kind in PARAMS:
        bundle = get(gateway_server, f"{kind}?_count=1000").json()
        assert bundle["total"] > 0, kind
        for entry in bundle["entry"]:
            resources.validate(entry["resource"])
