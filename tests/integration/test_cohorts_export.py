"""Bulk Data ``$export`` (system, Patient, Group of a cohort) against gunicorn with 2 workers, so
kick-off, polls, files and DELETE land on either worker: the job lives in the index and its
files under DATA_DIR. Every NDJSON line is validated with fhir.resources; counts are checked
against the clinical sheet and the FHIR API's own totals."""
from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Iterator

import orjson
import pytest
import requests

from gateway.clinical import resources
from tests.support.cohort_truth import Truth
from tests.support.procs import GatewayServer, start_gateway

pytestmark = pytest.mark.timeout(600)
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
BMI = "http://loinc.org|39156-5"


@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("export") / "data"
    shutil.copytree(loaded_data_dir, data)
    gateway = start_gateway(data, artifacts_dir / "logs", workers=2)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def truth(small_cohort) -> Truth:
    return Truth.load(small_cohort.clinical_csv, small_cohort.imaging_csv, small_cohort.root)


def kick_off(server, path: str, **params: str) -> str:
    response = requests.get(f"{server.url}/fhir/{path}", params=params, headers=ASYNC, timeout=30)
    assert response.status_code == 202, response.text
    return response.headers["Content-Location"]


def finish(status_url: str) -> dict:
    """Poll as a client does: 202 with X-Progress and Retry-After, then the manifest."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        response = requests.get(status_url, timeout=30)
        if response.status_code == 200:
            assert response.headers["Content-Type"].startswith("application/json")
            return response.json()
        assert response.status_code == 202, response.text
        assert response.headers["X-Progress"] and int(response.headers["Retry-After"]) >= 1
        time.sleep(float(response.headers["Retry-After"]) / 4)
    raise AssertionError("export did not finish")


def files(manifest: dict) -> dict[str, list[dict]]:
    """Each output file, downloaded, every line validated as its type."""
    out: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        response = requests.get(item["url"], headers={"Accept": "application/fhir+ndjson"},
                                timeout=60)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert len(lines) == item["count"] > 0
        for resource in lines:
            assert resource["resourceType"] == item["type"]
            resources.validate(resource)
        out[item["type"]] = lines
    return out


def total(server, kind: str) -> int:
    return requests.get(f"{server.url}/fhir/{kind}?_summary=count", timeout=30).json()["total"]


def patient_of(resource: dict) -> str:
    owner = resource.get("subject") or resource.get("patient") or resource.get("individual")
    reference = (owner or {})["reference"]  # individual: ResearchSubject
    assert reference.startswith("Patient/")
    return reference[8:]


def test_system_export_has_every_resource_of_every_type(server, truth):
    manifest = finish(kick_off(server, "$export", _outputFormat="application/fhir+ndjson"))
    assert set(manifest) >= {"transactionTime", "request", "requiresAccessToken", "output",
                             "error"}
    assert manifest["request"].startswith(f"{server.url}/fhir/$export?")
    assert manifest["error"] == [] and manifest["requiresAccessToken"] is False
    found = files(manifest)
    assert {r["id"] for r in found["Patient"]} == set(truth.patients)
    assert len(found["ImagingStudy"]) == len(truth.all_studies())
    assert len(found["Endpoint"]) == 1
    for kind in ("Condition", "Observation", "Encounter", "DiagnosticReport", "MolecularSequence"):
        assert len(found.get(kind, [])) == total(server, kind), kind


def test_patient_export_with_type_and_type_filter(server, truth):
    manifest = finish(kick_off(server, "Patient/$export", _type="Patient,Observation",
                               _typeFilter=f"Observation?code={BMI}", _outputFormat="ndjson"))
    found = files(manifest)
    assert set(found) == {"Patient", "Observation"}
    with_bmi = {pid for pid in truth.patients if truth.bmi(pid) is not None}
    assert {o["subject"]["reference"][8:] for o in found["Observation"]} == with_bmi
    assert all(o["code"]["coding"][0]["code"] == "39156-5" for o in found["Observation"])


def test_since_leaves_out_what_did_not_change(server):
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).isoformat()
    assert finish(kick_off(server, "$export", _since=later))["output"] == []
    earlier = "2000-01-01T00:00:00Z"
    found = files(finish(kick_off(server, "$export", _since=earlier, _type="Patient")))
    assert set(found) == {"Patient"} and found["Patient"]


def test_group_export_of_a_cohort_carries_its_dicom_series(server, truth):
    made = requests.post(f"{server.url}/cohorts", json={"fhir": "Patient?gender=female"},
                         timeout=60).json()
    cohort = requests.get(made["links"]["self"], timeout=30).json()
    manifest = finish(kick_off(server, f"Group/{cohort['id']}/$export"))
    found = files(manifest)
    women = {pid for pid, row in truth.patients.items() if row["sex"] == "F"}
    assert {r["id"] for r in found["Patient"]} == women == set(cohort["patients"])
    assert all(patient_of(r) in women for kind, rows in found.items() if kind != "Patient"
               for r in rows)
    assert {r["id"] for r in found["ImagingStudy"]} == set(cohort["studies"])
    dicom = manifest["extension"]["urn:tcia-gateway:bulk:dicom"]
    assert [s["SeriesInstanceUID"] for s in dicom["series"]] == [s["uid"] for s in cohort["series"]]
    assert dicom["download"] == f"{server.url}/cohorts/{cohort['id']}/download"
    one = dicom["series"][0]
    metadata = requests.get(one["url"] + "/metadata", timeout=30)
    assert metadata.status_code == 200 and len(metadata.json()) == one["NumberOfImages"]


def test_post_kick_off_with_parameters(server):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "_type", "valueString": "Encounter"}]}
    response = requests.post(f"{server.url}/fhir/$export", json=body, headers=ASYNC, timeout=30)
    assert response.status_code == 202
    assert set(files(finish(response.headers["Content-Location"]))) <= {"Encounter"}


def test_delete_cancels_and_the_job_is_gone(server):
    status_url = kick_off(server, "$export")
    deleted = requests.delete(status_url, timeout=30)
    assert deleted.status_code == 202
    gone = requests.get(status_url, timeout=30)
    assert gone.status_code == 404 and gone.json()["resourceType"] == "OperationOutcome"
    assert requests.delete(status_url, timeout=30).status_code == 404
    job = status_url.rsplit("/", 1)[1]
    # the runner sees the cancel between files and removes what it wrote
    folder = server.data_dir / "exports" / job
    deadline = time.monotonic() + 60
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not folder.exists()


@pytest.mark.parametrize("path, params, headers, names", [
    ("$export", {}, {}, "Prefer"),
    ("$export", {"_outputFormat": "text/csv"}, ASYNC, "_outputFormat"),
    ("$export", {"_type": "Medication"}, ASYNC, "_type"),
    ("Patient/$export", {"_type": "Endpoint"}, ASYNC, "_type"),
    ("$export", {"_since": "yesterday"}, ASYNC, "_since"),
    ("$export", {"_since": "2024-01-01T00:00:00"}, ASYNC, "_since"),
    ("$export", {"_typeFilter": "Observation?shoe=1"}, ASYNC, "shoe"),
    ("$export", {"_elements": "id"}, ASYNC, "_elements"),
])
def test_kick_off_refusals_are_400_operation_outcomes(server, path, params, headers, names):
    response = requests.get(f"{server.url}/fhir/{path}", params=params, headers=headers,
                            timeout=30)
    assert response.status_code == 400, response.text
    outcome = response.json()
    resources.validate(outcome)
    assert names in str(outcome)


def test_unknown_group_and_job_are_404(server):
    assert requests.get(f"{server.url}/fhir/Group/nope/$export", headers=ASYNC,
                        timeout=30).status_code == 404
    assert requests.get(f"{server.url}/fhir/$export-poll/nope", timeout=30).status_code == 404
    assert requests.get(f"{server.url}/fhir/$export-file/nope/Patient.ndjson",
                        timeout=30).status_code == 404
