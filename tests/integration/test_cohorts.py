"""Cohorts as objects (POST /cohorts, GET /cohorts/{id}) and as FHIR Groups, against the gateway
under gunicorn (2 workers) on SQLite and PostgreSQL, on the 36-patient cohort of the cohort
questions. Every answer is checked against a direct computation from the clinical sheet and the
DICOM files (tests/support/cohort_truth.py), never against the gateway's own FHIR answers."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import orjson
import pydicom
import pytest
import requests

from gateway.clinical import resources
from tests.support.cohort_truth import Truth
from tests.support.dicomfiles import make_file
from tests.support.procs import REPO, GatewayServer, start_gateway

COHORT = dict(patients=36, seed=9, ct_slices=4, xr_size=64, ct_fraction=0.5)
SCT, LOINC = "http://snomed.info/sct", "http://loinc.org"
DIABETES_2, ICU = f"{SCT}|44054006", f"{SCT}|305351004"
Q1 = ("ImagingStudy?modality=CT&patient._has:Condition:patient:code=" + DIABETES_2
      + "&patient._has:Encounter:patient:type=" + ICU)
MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from gateway.synth import write_cohort
    return write_cohort(tmp_path_factory.mktemp("cohort36"), workers=2, **COHORT)


@pytest.fixture(scope="module")
def truth(cohort) -> Truth:
    return Truth.load(cohort.clinical_csv, cohort.imaging_csv, cohort.root)


@pytest.fixture(scope="module")
def files(cohort) -> dict[str, dict[str, int]]:
    """study UID → series UID → instances, read from the DICOM files themselves."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in cohort.root.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
        found[ds.StudyInstanceUID][ds.SeriesInstanceUID] += 1
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, cohort, tmp_path_factory, artifacts_dir: Path) -> Iterator[GatewayServer]:
    env: dict[str, str] = {}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        env["GATEWAY_DATABASE_URL"] = postgres.create_database("cohorts" + uuid.uuid4().hex[:8])
    data = tmp_path_factory.mktemp(f"data-{request.param}")
    done = subprocess.run([sys.executable, "-m", "gateway", "import", str(cohort.root),
                           "--clinical", str(cohort.xlsx)], cwd=REPO, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "GATEWAY_DATA_DIR": str(data), **env})
    assert done.returncode == 0, done.stderr
    gateway = start_gateway(data, artifacts_dir / "logs", workers=2, env=env)
    gateway.env = env  # type: ignore[attr-defined]  # for the in-process statement count
    yield gateway
    gateway.stop()


def make(server: GatewayServer, body: object) -> dict:
    response = requests.post(f"{server.url}/cohorts", json=body, timeout=60)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{server.url}/cohorts/{response.json()['id']}"
    again = requests.get(response.headers["Location"], timeout=60)  # any worker reads it
    assert again.status_code == 200
    return again.json()


def expected(files: dict[str, dict[str, int]], studies: set[str]) -> dict[str, int]:
    return {se: n for st in studies for se, n in files[st].items()}


def test_fhir_imagingstudy_cohort_freezes_the_series_of_the_answer(server, truth, files):
    """Question 1's cohort: its studies are the answer, its series all of theirs."""
    found = make(server, {"fhir": Q1, "name": "CT of diabetic ICU patients"})
    studies = truth.q1_ct_of_diabetic_icu()
    assert set(found["studies"]) == studies and studies
    series = expected(files, studies)
    assert {s["uid"]: s["instances"] for s in found["series"]} == series
    assert found["counts"]["series"] == len(series)
    assert found["counts"]["instances"] == sum(series.values())
    assert set(found["patients"]) == {s.patient for s in truth.all_studies() if s.uid in studies}
    assert {s["collection"] for s in found["series"]} == {"COVID-19-AR"}
    assert found["name"] == "CT of diabetic ICU patients" and found["kind"] == "fhir"


def test_question_10_the_cohort_of_question_1_as_tcia_and_zip_with_its_citation(
        server, truth, files, tmp_path):
    from tcia_utils import nbia
    found = make(server, {"fhir": Q1})
    tcia = requests.get(found["links"]["manifest"], timeout=30)
    (tmp_path / "q10.tcia").write_bytes(tcia.content)
    assert nbia.manifestToList(str(tmp_path / "q10.tcia")) == [s["uid"] for s in found["series"]]
    response = requests.get(found["links"]["download"], timeout=120)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert sum(n.endswith(".dcm") for n in names) == sum(
        expected(files, truth.q1_ct_of_diabetic_icu()).values())
    citation = archive.read(f"cohort-{found['id']}/CITATION").decode()
    assert Q1 in citation and "https://doi.org/10.7937/tcia.2020.py71-5978" in citation


def test_patient_cohort_keeps_patients_and_all_their_series(server, truth, files):
    found = make(server, {"fhir": "Patient?gender=male"})
    men = {pid for pid, row in truth.patients.items() if row["sex"] == "M"}
    assert set(found["patients"]) == men and found["counts"]["patients"] == len(men)
    studies = {s.uid for pid in men for s in truth.studies.get(pid, [])}
    assert {s["uid"] for s in found["series"]} == set(expected(files, studies))


def test_qido_cohort(server, truth, files):
    found = make(server, {"qido": "studies?ModalitiesInStudy=CT"})
    studies = {s.uid for s in truth.all_studies() if "CT" in s.modalities}
    assert set(found["studies"]) == studies and found["kind"] == "qido"
    assert {s["uid"] for s in found["series"]} == set(expected(files, studies))


def test_explicit_cohort_is_the_union_of_its_lists(server, truth, files):
    studies = truth.all_studies()
    patient, study = studies[0].patient, studies[-1]
    series = sorted(files[studies[len(studies) // 2].uid])[0]
    found = make(server, {"patients": [patient], "studies": [study.uid], "series": [series]})
    want = expected(files, {s.uid for s in truth.studies[patient]} | {study.uid})
    want[series] = files[studies[len(studies) // 2].uid][series]
    assert {s["uid"]: s["instances"] for s in found["series"]} == want
    assert found["kind"] == "explicit"


@pytest.mark.parametrize("body, field, says", [
    (b"{not json", None, "not JSON"),
    ({}, None, "exactly one"),
    ({"fhir": "ImagingStudy?modality=CT", "qido": "studies"}, None, "exactly one"),
    ({"fhir": "ImagingStudy?bogus=1"}, "fhir", "bogus"),
    ({"fhir": "ImagingStudy?patient.foo=1"}, "fhir", "patient.foo"),
    ({"fhir": "Medication?code=x"}, "fhir", "Medication"),
    ({"fhir": 7}, "fhir", "search"),
    ({"qido": "studies?NoSuchKeyword=1"}, "qido", "NoSuchKeyword"),
    ({"qido": "instances?PatientID=1"}, "qido", "instances"),
    ({"series": ["1.2.3.4.5"]}, "series", "1.2.3.4.5"),
    ({"patients": "P1"}, "patients", "list"),
])
def test_a_bad_question_is_400_in_json_with_its_reason(server, body, field, says):
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    response = requests.post(f"{server.url}/cohorts", timeout=60, **kwargs)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert answer["status"] == 400 and says in answer["reason"] and answer["field"] == field


@pytest.mark.parametrize("path", ["", "/manifest?format=tcia", "/download", "/viewer"])
def test_an_unknown_cohort_is_404(server, path):
    response = requests.get(f"{server.url}/cohorts/{uuid.uuid4()}{path}", timeout=30)
    assert response.status_code == 404 and "no cohort" in response.json()["reason"]


def test_a_cohort_is_a_fhir_group(server, truth):
    found = make(server, {"fhir": Q1})
    response = requests.get(f"{server.url}/fhir/Group/{found['id']}", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    group = response.json()
    resources.validate(group)
    assert (group["type"], group["actual"], group["quantity"]) == ("person", True,
                                                                   len(found["patients"]))
    assert [m["entity"]["reference"] for m in group["member"]] == [
        f"Patient/{p}" for p in found["patients"]]
    missing = requests.get(f"{server.url}/fhir/Group/{uuid.uuid4()}", timeout=30)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


def test_post_group_with_member_filters_makes_the_cohort_of_question_7(server, truth):
    """Men older than 65 with an ICU stay: three Bulk Cohort member-filters, ANDed."""
    filters = ["Patient?gender=male", f"Observation?code-value-quantity={LOINC}|30525-0$gt65",
               f"Encounter?type={ICU}"]
    body = {"resourceType": "Group", "type": "person", "actual": True, "name": "q7",
            "modifierExtension": [{"url": MEMBER_FILTER, "valueExpression": {
                "language": "application/x-fhir-query", "expression": q}} for q in filters]}
    response = requests.post(f"{server.url}/fhir/Group", json=body, timeout=60)
    assert response.status_code == 201, response.text
    group = response.json()
    resources.validate(group)
    want = {pid for pid, row in truth.patients.items()
            if row["sex"] == "M" and float(row["age"]) > 65 and truth.icu(pid)}
    assert want and {m["entity"]["reference"][8:] for m in group["member"]} == want
    assert [e["valueExpression"]["expression"] for e in group["modifierExtension"]] == filters
    cohort = requests.get(f"{server.url}/cohorts/{group['id']}", timeout=30).json()
    assert set(cohort["patients"]) == want and cohort["kind"] == "group"


@pytest.mark.parametrize("body, status, names", [
    ({"resourceType": "Group", "type": "person", "actual": True}, 422, "modifierExtension"),
    ({"resourceType": "Group", "type": "device", "actual": True}, 422, "Group.type"),
    ({"resourceType": "Patient"}, 400, "Group resource"),
    ({"resourceType": "Group", "type": "person", "modifierExtension": [{
        "url": MEMBER_FILTER, "valueExpression": {"language": "application/x-fhir-query",
                                                  "expression": "Patient?shoe-size=9"}}]},
     400, "shoe-size"),
])
def test_post_group_refusals_are_operation_outcomes(server, body, status, names):
    response = requests.post(f"{server.url}/fhir/Group", json=body, timeout=60)
    assert response.status_code == status, response.text
    outcome = response.json()
    resources.validate(outcome)
    assert names in str(outcome)


def test_group_export_of_a_cohort_on_this_database(server, truth):
    """Bulk Data on both databases: the kick-off's SQL (patients, _typeFilter) is the
    driver's own; tests/integration/test_cohorts_export.py covers the protocol in full."""
    made = make(server, {"fhir": Q1})
    kick = requests.get(f"{server.url}/fhir/Group/{made['id']}/$export", timeout=30,
                        params={"_type": "Patient,Condition,ImagingStudy",
                                "_typeFilter": f"Condition?code={DIABETES_2}"},
                        headers={"Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    for _ in range(240):
        poll = requests.get(kick.headers["Content-Location"], timeout=30)
        if poll.status_code != 202:
            break
        time.sleep(0.25)
    assert poll.status_code == 200, poll.text
    found = {}
    for item in poll.json()["output"]:
        lines = requests.get(item["url"], timeout=30).content.splitlines()
        assert len(lines) == item["count"]
        found[item["type"]] = [orjson.loads(line) for line in lines]
        for resource in found[item["type"]]:
            resources.validate(resource)
    assert {r["id"] for r in found["Patient"]} == set(made["patients"])
    assert {r["id"] for r in found["ImagingStudy"]} == {
        s.uid for pid in made["patients"] for s in truth.studies[pid]}
    assert {r["subject"]["reference"][8:] for r in found["Condition"]} == set(made["patients"])
    assert all(any(c["code"] == "44054006" for c in r["code"]["coding"])
               for r in found["Condition"])
    series = poll.json()["extension"]["urn:tcia-gateway:bulk:dicom"]["series"]
    assert [s["SeriesInstanceUID"] for s in series] == [s["uid"] for s in made["series"]]


def facet(answer: dict, name: str) -> dict[str, int]:
    return {v["value"]: v["studies"] for v in answer["facets"][name]}


def test_facet_counts_match_the_sheet_and_the_files(server, truth, files):
    answer = requests.get(f"{server.url}/cohorts/facets", timeout=60).json()
    studies = truth.all_studies()
    assert answer["studies"] == len(studies) == len(files)
    assert answer["series"] == sum(len(s) for s in files.values())
    assert answer["patients"] == len({s.patient for s in studies})

    def per(predicate) -> int:
        return sum(1 for s in studies if predicate(s))
    sex = {"F": "female", "M": "male"}
    assert facet(answer, "sex") == {v: per(lambda s, k=k: truth.patients[s.patient]["sex"] == k)
                                    for k, v in sex.items() if per(
                                        lambda s, k=k: truth.patients[s.patient]["sex"] == k)}
    assert facet(answer, "condition")["44054006"] == per(
        lambda s: truth.flag(s.patient, "diabetes_type_ii"))
    assert facet(answer, "icu").get("yes", 0) == per(lambda s: truth.icu(s.patient))
    assert facet(answer, "mortality").get("true", 0) == per(
        lambda s: truth.flag(s.patient, "mortality"))
    assert facet(answer, "modality")["CT"] == per(lambda s: "CT" in s.modalities)
    assert facet(answer, "collection") == {"COVID-19-AR": len(studies)}
    old = per(lambda s: 65 <= float(truth.patients[s.patient]["age"]) < 80)
    assert facet(answer, "age").get("65-79", 0) == old


def test_a_facet_selection_answers_question_1_and_keeps_its_siblings(server, truth):
    query = "condition=44054006&icu=yes&modality=CT"
    answer = requests.get(f"{server.url}/cohorts/facets?{query}", timeout=60).json()
    assert answer["studies"] == len(truth.q1_ct_of_diabetic_icu()) > 0
    assert answer["selection"] == {"condition": ["44054006"], "icu": ["yes"], "modality": ["CT"]}
    diabetic_icu = [s for s in truth.all_studies() if truth.flag(s.patient, "diabetes_type_ii")
                    and truth.icu(s.patient)]
    assert facet(answer, "modality")["DX"] == sum(1 for s in diabetic_icu if "DX" in s.modalities)
    made = make(server, {"facets": {"condition": ["44054006"], "icu": ["yes"],
                                    "modality": ["CT"]}})
    assert set(made["studies"]) == truth.q1_ct_of_diabetic_icu() and made["kind"] == "facets"
    bad = requests.post(f"{server.url}/cohorts", json={"facets": {"shoe": ["9"]}}, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "facets"


def test_facet_counts_are_one_sql_statement(server):
    from gateway import create_app
    from gateway.config import Settings
    from tests.support.sqlcount import StatementCounter
    settings = Settings().replace(data_dir=server.data_dir, log_level="WARNING",
                                  database_url=server.env.get("GATEWAY_DATABASE_URL", ""))
    app = create_app(settings)
    counter = StatementCounter(app.extensions["tcia_fhir"].repository.engine)
    client = app.test_client()
    client.get("/cohorts/facets")  # warm: the studies' collections are recorded once
    counter.take()
    response = client.get("/cohorts/facets?sex=female&modality=CT&condition=44054006")
    statements = counter.take()
    assert response.status_code == 200 and response.get_json()["facets"]["sex"]
    assert len(statements) == 1, statements


def test_a_cohort_is_frozen_when_made(server, truth):
    """Last in this module (it adds a study): the archive's later state never changes an
    existing cohort; the same question asked again sees it."""
    before = make(server, {"qido": "studies?ModalitiesInStudy=CT"})
    pid = sorted(truth.patients)[0]
    path = make_file(Path(os.environ.get("TMPDIR", "/tmp")) / f"new-{uuid.uuid4().hex}.dcm",
                     patient=pid, study=f"new-{uuid.uuid4().hex}", modality="CT")
    stow = requests.post(f"{server.url}/dicomweb/studies", data=_multipart(path.read_bytes()),
                         headers={"Content-Type": 'multipart/related; type="application/dicom"; '
                                                  "boundary=cohortsboundary"}, timeout=60)
    path.unlink()
    assert stow.status_code == 200, stow.text
    after = make(server, {"qido": "studies?ModalitiesInStudy=CT"})
    assert after["counts"]["studies"] == before["counts"]["studies"] + 1
    again = requests.get(f"{server.url}/cohorts/{before['id']}", timeout=30).json()
    assert again["counts"] == before["counts"] and again["series"] == before["series"]


def _multipart(data: bytes) -> bytes:
    return (b"--cohortsboundary\r\nContent-Type: application/dicom\r\n\r\n" + data
            + b"\r\n--cohortsboundary--\r\n")
