"""The cohort questions (clinical data and images together) asked through FHIR with fhirpy and
fhirclient against the gateway under gunicorn, on SQLite and on PostgreSQL, each answer checked
against a direct computation from the clinical sheet and the DICOM files (support/cohort_truth).
The 36-patient cohort (seed 9, half of them with a CT) makes every answer non-trivial.

How FHIR says "the first chest radiograph of each patient" (question 6): the server sorts,
``_sort=patient,started`` (StudyDate, then StudyTime within a day, then storage order), and the
client keeps the first study of each patient."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import orjson
import pydicom
import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.fhirsearch import FHIRSearch
from fhirpy import SyncFHIRClient
from fhirpy.base.searchset import Raw

from tests.support.cohort_truth import RACE_CODES, Truth, first_per_patient
from tests.support.procs import REPO, GatewayServer, start_gateway

COHORT = dict(patients=36, seed=9, ct_slices=4, xr_size=64, ct_fraction=0.5)
SCT, LOINC = "http://snomed.info/sct", "http://loinc.org"
DIABETES_2, CKD, ICU = f"{SCT}|44054006", f"{SCT}|709044004", f"{SCT}|305351004"
BMI, FIO2 = f"{LOINC}|39156-5", f"{LOINC}|3150-0"
RACE = "urn:oid:2.16.840.1.113883.6.238"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from gateway.synth import write_cohort
    return write_cohort(tmp_path_factory.mktemp("cohort36"), workers=2, **COHORT)


@pytest.fixture(scope="module")
def truth(cohort) -> Truth:
    return Truth.load(cohort.clinical_csv, cohort.imaging_csv, cohort.root)


def _import(cohort, data: Path, env: dict[str, str]) -> None:
    """`tcia-gateway import` of the images and the sheet, as an operator runs it."""
    done = subprocess.run([sys.executable, "-m", "gateway", "import", str(cohort.root),
                           "--clinical", str(cohort.xlsx)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "GATEWAY_DATA_DIR": str(data), **env})
    assert done.returncode == 0, done.stderr
    assert f"{cohort.instances} new" in done.stdout


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, cohort, tmp_path_factory, artifacts_dir: Path) -> Iterator[GatewayServer]:
    env: dict[str, str] = {}
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        env["GATEWAY_DATABASE_URL"] = postgres.create_database("cohort" + uuid.uuid4().hex[:8])
    data = tmp_path_factory.mktemp(f"data-{request.param}")
    _import(cohort, data, env)
    gateway = start_gateway(data, artifacts_dir / "logs", workers=2, env=env)
    gateway.env = env  # type: ignore[attr-defined]  # for the in-process statement counts
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def smart(server):
    fhir = smart_client.FHIRClient(settings={"app_id": "cohorts", "api_base": server.url + "/fhir"})
    fhir.server.get_capability()  # strict parse of /metadata
    return fhir


@pytest.fixture(scope="module")
def fhirpy(server) -> SyncFHIRClient:
    return SyncFHIRClient(server.url + "/fhir")


def smart_search(smart, kind: str, params: dict, count: str = "7") -> list[dict]:
    """fhirclient: every page (small pages, so paging is exercised), parsed strictly as R4."""
    model = FHIRElementFactory.instantiate(kind, None).__class__
    found = []
    for page in FHIRSearch(model, {**params, "_count": count}).perform_iter(smart.server):
        found += [e.resource.as_json() for e in page.entry or [] if e.search.mode == "match"]
    return found


def smart_count(smart, kind: str, params: dict) -> int:
    model = FHIRElementFactory.instantiate(kind, None).__class__
    bundle = next(FHIRSearch(model, {**params, "_summary": "count"}).perform_iter(smart.server))
    assert not bundle.entry
    return bundle.total


def fhirpy_search(client: SyncFHIRClient, kind: str, params: dict, sort: tuple = ()) -> list[dict]:
    search = client.resources(kind).search(Raw(**params))
    if sort:
        search = search.sort(*sort)
    return [r.serialize() for r in search.limit(7).fetch_all()]


def both(smart, fhirpy, kind: str, params: dict) -> list[dict]:
    """The same search through both clients: the same resources, in the same order."""
    via_smart = smart_search(smart, kind, params)
    via_fhirpy = fhirpy_search(fhirpy, kind, params)
    assert [r["id"] for r in via_smart] == [r["id"] for r in via_fhirpy]
    return via_fhirpy


def ids(resources: list[dict]) -> set[str]:
    return {r["id"] for r in resources}


def patient_of(resource: dict) -> str:
    return resource["subject"]["reference"].split("/")[1]


def test_every_question_has_a_non_trivial_answer(truth):
    studies = len(truth.all_studies())
    assert 0 < len(truth.q1_ct_of_diabetic_icu()) < studies
    assert 0 < len(truth.q2_radiographs_of_deceased()) < studies
    assert 0 < truth.q3_ckd_deceased() < len(truth.patients)
    assert sum(1 for n in truth.q4_icu_mortality_by_race().values() if n) >= 2
    assert 0 < len(truth.q5_fio2_at_least(50)) < studies
    radiographs = truth.q6_radiographs_bmi_at_least(40)
    assert len(first_per_patient(radiographs, lambda s: s.patient)) >= 2 and len(radiographs) > 3
    assert 0 < len(truth.q8_reports_mentioning("consolidation", "ground-glass")) < studies


def test_q1_ct_studies_of_diabetic_patients_admitted_to_icu(smart, fhirpy, truth):
    params = {"modality": "CT", "patient._has:Condition:patient:code": DIABETES_2,
              "patient._has:Encounter:patient:type": ICU}
    found = both(smart, fhirpy, "ImagingStudy", params)
    assert ids(found) == truth.q1_ct_of_diabetic_icu()
    assert all(any(m["code"] == "CT" for m in r["modality"]) for r in found)


def test_q2_chest_radiographs_of_patients_who_died(smart, fhirpy, truth):
    found = both(smart, fhirpy, "ImagingStudy", {"modality": "DX,CR", "patient.deceased": "true"})
    assert ids(found) == truth.q2_radiographs_of_deceased()
    # fhirpy's own chain syntax (patient__deceased) sends the same search
    natural = fhirpy.resources("ImagingStudy").search(modality="DX,CR", patient__deceased=True)
    assert {r["id"] for r in natural.fetch_all()} == ids(found)


def test_q3_patients_with_ckd_who_died_counted(smart, fhirpy, truth):
    params = {"_has:Condition:patient:code": CKD, "deceased": "true"}
    expected = truth.q3_ckd_deceased()
    assert smart_count(smart, "Patient", params) == expected
    assert fhirpy.resources("Patient").search(Raw(**params)).count() == expected
    raw = fhirpy.resources("Patient").search(Raw(**params, _summary="count")).fetch_raw()
    assert raw["total"] == expected and "entry" not in raw
    assert len(both(smart, fhirpy, "Patient", params)) == expected


def test_q4_icu_mortality_by_race(smart, fhirpy, truth):
    expected = truth.q4_icu_mortality_by_race()
    died_in_icu = {"deceased": "true", "_has:Encounter:patient:type": ICU}
    for code in RACE_CODES.values():
        params = {**died_in_icu, "race": f"{RACE}|{code}"}
        assert smart_count(smart, "Patient", params) == expected[code], code
        assert fhirpy.resources("Patient").search(Raw(**params)).count() == expected[code], code
    # OTHER carries no OMB code (US Core: text only): the patients whose race has no code
    other = {**died_in_icu, "race:missing": "true"}
    assert smart_count(smart, "Patient", other) == expected[None]
    assert sum(smart_count(smart, "Patient", {**died_in_icu, "race": f"{RACE}|{c}"})
               for c in RACE_CODES.values()) + expected[None] == smart_count(smart, "Patient", died_in_icu)


def test_q5_imaging_studies_taken_with_fio2_of_50_percent_or_more(smart, fhirpy, truth):
    expected = truth.q5_fio2_at_least(50)
    composite = both(smart, fhirpy, "ImagingStudy",
                     {"_has:Observation:derived-from:code-value-quantity": f"{FIO2}$ge50"})
    assert ids(composite) == expected
    # the same with two _has: the only quantity-valued Observation derived from a study is FiO2
    split = both(smart, fhirpy, "ImagingStudy", {"_has:Observation:derived-from:code": FIO2,
                                                 "_has:Observation:derived-from:value-quantity": "ge50"})
    assert ids(split) == expected
    below = both(smart, fhirpy, "ImagingStudy",
                 {"_has:Observation:derived-from:code-value-quantity": f"{FIO2}$lt50"})
    assert not ids(below) & expected and ids(below) | expected == {s.uid for _r, s in truth.paired()
                                                                    if _r["fio2_time_of_img_study"].strip()}


def test_q6_first_chest_radiograph_of_each_patient_with_bmi_40_or_more(smart, fhirpy, truth):
    params = {"modality": "DX,CR", "_sort": "patient,started",
              "patient._has:Observation:patient:code-value-quantity": f"{BMI}$ge40"}
    via_smart = smart_search(smart, "ImagingStudy", params, count="2")
    via_fhirpy = fhirpy_search(fhirpy, "ImagingStudy", {k: v for k, v in params.items() if k != "_sort"},
                               sort=("patient", "started"))
    expected = truth.q6_radiographs_bmi_at_least(40)
    assert [r["id"] for r in via_smart] == [r["id"] for r in via_fhirpy] == [s.uid for s in expected]
    firsts = first_per_patient(via_fhirpy, patient_of)
    assert [r["id"] for r in firsts] == [s.uid for s in first_per_patient(expected, lambda s: s.patient)]
    assert [patient_of(r) for r in firsts] == sorted({s.patient for s in expected})
    # descending: the same studies, each patient's latest first
    latest = fhirpy_search(fhirpy, "ImagingStudy", {k: v for k, v in params.items() if k != "_sort"},
                           sort=("patient", "-started"))
    assert [r["id"] for r in latest] == [s.uid for s in sorted(
        expected, key=lambda s: (s.patient, tuple(-ord(c) for c in s.date + s.time)))]


MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"


def test_q7_men_over_65_with_an_icu_stay_as_a_group_exported(smart, fhirpy, truth, server):
    """Bulk Cohort: fhirpy creates the Group from three member-filters, fhirclient reads it,
    and its Bulk Data $export carries exactly those patients."""
    filters = ["Patient?gender=male", f"Observation?code-value-quantity={LOINC}|30525-0$gt65",
               f"Encounter?type={ICU}"]
    group = fhirpy.resource("Group", type="person", actual=True, name="q7", modifierExtension=[
        {"url": MEMBER_FILTER, "valueExpression": {"language": "application/x-fhir-query",
                                                   "expression": q}} for q in filters])
    group.save()
    want = {pid for pid, row in truth.patients.items()
            if row["sex"] == "M" and float(row["age"]) > 65 and truth.icu(pid)}
    from fhirclient.models.group import Group
    read = Group.read(group.id, smart.server)
    assert want and {m.entity.reference[8:] for m in read.member} == want
    kick = requests.get(f"{server.url}/fhir/Group/{group.id}/$export", timeout=30,
                        params={"_type": "Patient"},
                        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
    assert kick.status_code == 202, kick.text
    status = kick.headers["Content-Location"]
    for _ in range(600):
        poll = requests.get(status, timeout=30)
        if poll.status_code != 202:
            break
        time.sleep(0.1)
    assert poll.status_code == 200, poll.text
    (output,) = poll.json()["output"]
    lines = requests.get(output["url"], timeout=30).text.splitlines()
    assert output["type"] == "Patient" and output["count"] == len(want)
    assert {orjson.loads(line)["id"] for line in lines} == want


def test_q8_reports_whose_findings_mention_consolidation_or_ground_glass(smart, fhirpy, truth):
    found = both(smart, fhirpy, "DiagnosticReport", {"_content": "consolidation,ground-glass"})
    got = sorted((patient_of(r), " ".join(r["conclusion"].lower().split())) for r in found)
    assert got == truth.q8_reports_mentioning("consolidation", "ground-glass")
    findings_of = {s.uid: " ".join(row["radiologist_key_findings"].lower().split())
                   for row, s in truth.paired()}
    for report in found:  # each report names the study its imaging row describes
        (study,) = report["imagingStudy"]
        assert findings_of[study["reference"].split("/")[1]] == " ".join(report["conclusion"].lower().split())
    assert smart_count(smart, "DiagnosticReport", {"_content": "Ground-Glass"}) == len(
        truth.q8_reports_mentioning("ground-glass"))


def test_q9_patients_of_a_collection_counted(smart, fhirpy, truth, cohort):
    """Every synthetic file carries TCIA's CTP block naming COVID-19-AR: its ResearchStudy
    (identifier the DOI) and one ResearchSubject per patient, found by ``_has``."""
    names = {str(pydicom.dcmread(p, stop_before_pixels=True).get((0x0013, 0x1010)).value).strip()
             for p in sorted(cohort.root.rglob("*.dcm"))[:5]}
    assert names == {"COVID-19-AR"}
    (study,) = both(smart, fhirpy, "ResearchStudy", {"title": "COVID-19-AR"}) or \
        both(smart, fhirpy, "ResearchStudy", {"_id": "COVID-19-AR"})
    params = {"_has:ResearchSubject:individual:study": f"ResearchStudy/{study['id']}"}
    members = both(smart, fhirpy, "Patient", params)
    assert ids(members) == set(truth.studies)  # every patient with images, once
    assert smart_count(smart, "Patient", params) == len(truth.studies)
    assert smart_count(smart, "Patient", {"_has:ResearchSubject:individual:study":
                                          "ResearchStudy/MIDRC-RICORD-1C"}) == 0


US_CORE = {  # US Core 6.1 SHALL searches: each combination is the AND of its parameters
    "Condition": [("patient",), ("patient", "category")],
    "Observation": [("patient", "category"), ("patient", "category", "date"), ("patient", "code")],
    "DiagnosticReport": [("patient",), ("patient", "category"), ("patient", "category", "date"),
                         ("patient", "code")],
    "Encounter": [("_id",), ("patient",)],
    "Patient": [("_id",), ("identifier",)],
}


def _value(kind: str, name: str, r: dict) -> str:
    if name == "patient":
        return patient_of(r) if kind != "Patient" else r["id"]
    if name == "_id":
        return r["id"]
    if name == "identifier":
        return f"{r['identifier'][0]['system']}|{r['identifier'][0]['value']}"
    if name == "date":
        return "ge" + r["effectiveDateTime"][:10]
    concept = r[name][0] if isinstance(r[name], list) else r[name]
    return f"{concept['coding'][0]['system']}|{concept['coding'][0]['code']}"


@pytest.mark.parametrize("kind", list(US_CORE))
def test_us_core_shall_searches(smart, fhirpy, kind):
    dated = {"Observation": {"category": "imaging"}, "DiagnosticReport": {}}.get(kind, {})
    reference = fhirpy_search(fhirpy, kind, dated)[-1]
    for combination in US_CORE[kind]:
        params = {name: _value(kind, name, reference) for name in combination}
        found = ids(both(smart, fhirpy, kind, params))
        singles = [ids(fhirpy_search(fhirpy, kind, {n: v})) for n, v in params.items()]
        assert reference["id"] in found and found == set.intersection(*singles), (kind, params)


def test_us_core_searches_that_match_nothing_here_are_still_valid(smart):
    """De-identified: no names or birth dates; ICU stays carry no dates."""
    pid = smart_search(smart, "Patient", {})[0]["id"]
    for kind, params in [("Patient", {"name": "smith"}), ("Patient", {"birthdate": "ge1900", "name": "a"}),
                         ("Patient", {"gender": "male", "name": "a"}),
                         ("Encounter", {"date": "ge1900", "patient": pid})]:
        assert smart_count(smart, kind, params) == 0


def test_sort_on_several_keys_survives_paging(smart, fhirpy):
    params = {"code": BMI, "_sort": "-value-quantity,patient"}
    via_smart = smart_search(smart, "Observation", params, count="4")
    present = [r for r in via_smart if "valueQuantity" in r]
    absent = via_smart[len(present):]  # no BMI recorded (dataAbsentReason): last
    assert absent and all("dataAbsentReason" in r for r in absent)
    values = [(-r["valueQuantity"]["value"], patient_of(r)) for r in present]
    assert values == sorted(values) and len(values) > 8
    assert [patient_of(r) for r in absent] == sorted(patient_of(r) for r in absent)
    patients = fhirpy_search(fhirpy, "Patient", {}, sort=("gender", "-_id"))
    assert [(p["gender"], [-ord(c) for c in p["id"]]) for p in patients] == sorted(
        (p["gender"], [-ord(c) for c in p["id"]]) for p in patients)


ONE_STATEMENT = [  # each: one SELECT on the index database, whatever it joins
    f"ImagingStudy?modality=CT&patient._has:Condition:patient:code={DIABETES_2}"
    f"&patient._has:Encounter:patient:type={ICU}",
    "ImagingStudy?modality=DX,CR&patient.deceased=true&_sort=patient,-started&_count=5",
    "ImagingStudy?patient.deceased=true&_summary=count",
    f"ImagingStudy?_has:Observation:derived-from:code-value-quantity={FIO2}$ge50",
    f"Patient?_has:Condition:patient:code={CKD}&deceased=true&_summary=count",
    f"Patient?race={RACE}|2054-5&_has:Encounter:patient:type={ICU}&_sort=-_id",
    f"Observation?patient.gender=male&code-value-quantity={BMI}$ge30&_sort=-value-quantity,patient",
    "DiagnosticReport?_content=consolidation,ground-glass&_sort=patient,-date&_count=3",
    "Encounter?patient.deceased=true&_sort=patient",
]


@pytest.fixture(scope="module")
def in_process(server):
    """The app in this process on the server's database, with its statements counted."""
    from gateway import create_app
    from gateway.config import Settings
    from tests.support.sqlcount import StatementCounter
    settings = Settings().replace(data_dir=server.data_dir, log_level="WARNING",
                                  database_url=server.env.get("GATEWAY_DATABASE_URL", ""))
    app = create_app(settings)
    counter = StatementCounter(app.extensions["tcia_fhir"].repository.engine,
                               app.extensions["tcia_gateway"]["archive"].index.engine)
    client = app.test_client()
    assert client.get("/fhir/Patient?_count=1").status_code == 200  # tables made on first use
    return client, counter


def searched(statements: list[str]) -> list[str]:
    """The statements of a search, without the cache's change-token probe: on PostgreSQL each
    request reads the one-row FHIR generation (shared by every node) to know whether a
    cached answer is still current; at most one per request, whatever the query."""
    probes = [s for s in statements if "FROM fhir_generation" in s]
    assert len(probes) <= 1, probes
    return [s for s in statements if s not in probes]


@pytest.mark.parametrize("query", ONE_STATEMENT)
def test_each_search_is_one_sql_statement(in_process, server, query):
    client, counter = in_process
    counter.take()
    response = client.get("/fhir/" + query)
    statements = searched(counter.take())
    assert response.status_code == 200, response.get_json()
    assert len(statements) == 1, statements
    assert statements[0].lstrip().upper().startswith("SELECT")
    body = response.get_json()
    assert body["total"] > 0, query  # a statement that finds something, not a trivial one
    served = requests.get(f"{server.url}/fhir/{query}", timeout=30).json()  # same as gunicorn's
    assert served["total"] == body["total"]
    assert [e["resource"]["id"] for e in served.get("entry", [])] == [
        e["resource"]["id"] for e in body.get("entry", [])]


@pytest.mark.parametrize("query, expected", [
    ("Observation?patient.gender=male&_include=Observation:patient", 2),  # + the Patients
    ("ImagingStudy?patient.deceased=true&_offset=100000", 2),  # a page past the end: + the total
    ("ImagingStudy?patient.deceased=true&_count=3&_include=ImagingStudy:patient", 2),
])
def test_the_count_sees_every_statement(in_process, query, expected):
    """The counter itself: searches known to need a second statement show two."""
    client, counter = in_process
    counter.take()
    assert client.get("/fhir/" + query).status_code == 200
    assert len(searched(counter.take())) == expected
