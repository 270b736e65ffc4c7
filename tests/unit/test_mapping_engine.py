"""Known rows → known codes, values and units (one or more per data-dictionary column), and what
blank, "unknown" and garbage cells become. Every resource must pass fhir.resources validation."""
from __future__ import annotations

import datetime as dt

import pytest

from gateway.clinical import resources
from gateway.mapping.engine import Engine, MapReport
from gateway.mapping.link import Links, Study

PID = "COVID-19-AR-16406504"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SCT, ICD, LOINC, UCUM = ("http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm",
                         "http://loinc.org", "http://unitsofmeasure.org")
COMORBIDITIES = [  # column, condition id suffix, SNOMED CT, ICD-10-CM (DESIGN.md §4)
    ("tuberculosis", "tuberculosis", "56717001", "A15.9"),
    ("systemic_lupus_erythmatosus", "sle", "55464009", "M32.9"),
    ("rheumatoid_arthritis", "rheumatoid-arthritis", "69896004", "M06.9"),
    ("extensive_burns", "extensive-burns", None, "T31"),
    ("asplenia", "asplenia", "707147002", "D73.0"),
    ("hyposplenia", "hyposplenism", None, "D73.0"),
    ("measles", "measles", "14189004", "B05.9"),
    ("cytomegalovirus", "cytomegalovirus", "28944009", "B25.9"),
    ("chicken_pox", "chickenpox", "38907003", "B01.9"),
    ("herpes_zoster", "herpes-zoster", "4740000", "B02.9"),
    ("malnutrition", "malnutrition", None, "E46"),
    ("chronic_kidney_disease", "ckd", "709044004", "N18.9"),
    ("diabetes_type_i", "diabetes-type-1", "46635009", "E10.9"),
    ("diabetes_type_ii", "diabetes-type-2", "44054006", "E11.9"),
    ("transplant", "transplant", "161663000", "Z94.9"),
    ("hemodialysis_pre_diagnosis", "dialysis-pre", "105502003", "Z99.2"),
    ("hemodialysis_post_diagnosis", "dialysis-post", "105502003", "Z99.2"),
    ("cancer", "cancer", "363346000", "C80.1"),
]


def patient_row(**changes) -> dict:
    row = {"patient_id": PID, "age": "57", "sex": "F", "race": "BLACK OR AFRICAN AMERICAN",
           "zip": "722", "latest_bmi": "31.2", "latest_weight": "180", "latest_height": "5' 7\"",
           **{col: "Y" for col, *_ in COMORBIDITIES}, "current_pregnant": "Y",
           "covid_test_positive": "Y", "test_name": "SARS-COV-2 RNA (COVID-19), QUALITATIVE NAAT",
           "icu_admit": "Y", "icu_admits": "2", "mortality": "Y", "genbank_accession": "MW123456.1"}
    row.update(changes)
    return row


def imaging_row(**changes) -> dict:
    row = {"patient_id": PID, "diag_to_img_study_days": "2", "diagnosis_to_imaging_time_hrs": "50.5",
           "image_study_description": "XR CHEST AP PORTABLE", "study_modality": "DX",
           "fio2_time_of_img_study": "40", "radiologist_key_findings": "Bilateral patchy airspace disease"}
    row.update(changes)
    return row


ENGINE = Engine()  # the built-in mapping, loaded once for the module
LINKS = Links({1: Study(STUDY_UID, dt.date(2019, 5, 3), "101500", "XR CHEST AP PORTABLE",
                        frozenset({"DX"}))}, dt.date(2019, 5, 1))


def run(patient: dict | None = None, image: dict | None = None) -> tuple[dict, MapReport]:
    report = MapReport()
    made = ENGINE.map_patient(PID, [(1, patient or patient_row())], [(1, image or imaging_row())],
                              LINKS, report)
    return {f"{r['resourceType']}/{r['id']}": r for r in made}, report


@pytest.fixture(scope="module")
def full():
    return run()


def codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def test_every_resource_validates_and_nothing_is_rejected(full):
    made, report = full
    assert not report.rejected and report.warnings == 0
    for resource in made.values():
        resources.validate(resource)
    assert {k.split("/")[0] for k in made} == {"Patient", "Condition", "Observation", "Encounter",
                                                "DiagnosticReport", "MolecularSequence"}


def test_patient_columns(full):
    made, _ = full
    patient = made[f"Patient/{PID}"]
    assert patient["identifier"][0]["value"] == PID                                    # patient_id
    assert patient["gender"] == "female"                                               # sex
    race = patient["extension"][0]
    assert race["url"] == "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
    assert race["extension"][0]["valueCoding"]["code"] == "2054-5"                     # race
    assert patient["address"][0]["postalCode"] == "722"                                # zip
    assert patient["deceasedBoolean"] is True                                          # mortality
    assert "birthDate" not in patient
    assert patient["name"][0]["extension"][0]["valueCode"] == "masked"


@pytest.mark.parametrize("suffix, column, loinc, value, unit", [
    ("age", "age", "30525-0", 57, "a"),
    ("bmi", "latest_bmi", "39156-5", 31.2, "kg/m2"),
    ("weight", "latest_weight", "29463-7", 180.0, "[lb_av]"),
    ("height", "latest_height", "8302-2", 67.0, "[in_i]"),
    ("img1-fio2", "fio2_time_of_img_study", "3150-0", 40.0, "%"),
])
def test_quantities(full, suffix, column, loinc, value, unit):
    obs = full[0][f"Observation/{PID}-{suffix}"]
    assert codes(obs["code"]) == {(LOINC, loinc)}
    assert obs["valueQuantity"] == {**obs["valueQuantity"], "value": value, "code": unit, "system": UCUM}


@pytest.mark.parametrize("column, suffix, sct, icd", COMORBIDITIES)
def test_comorbidity_conditions(full, column, suffix, sct, icd):
    cond = full[0][f"Condition/{PID}-{suffix}"]
    expected = {(ICD, icd)} | ({(SCT, sct)} if sct else set())
    assert codes(cond["code"]) == expected
    assert cond["clinicalStatus"]["coding"][0]["code"] == "active"
    assert cond["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert cond["category"][0]["coding"][0]["code"] == "problem-list-item"


def test_covid_test_name_and_condition(full):
    made, _ = full
    cond = made[f"Condition/{PID}-covid-19"]
    assert codes(cond["code"]) == {(SCT, "840539006"), (ICD, "U07.1")}
    assert cond["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert cond["onsetDateTime"] == "2019-05-01"                        # shifted diagnosis date
    lab = made[f"Observation/{PID}-sars-cov-2"]
    assert codes(lab["code"]) == {(LOINC, "94500-6")}
    assert lab["code"]["text"] == "SARS-COV-2 RNA (COVID-19), QUALITATIVE NAAT"       # test_name
    assert lab["category"][0]["coding"][0]["code"] == "laboratory"
    assert codes(lab["valueCodeableConcept"]) == {(SCT, "260373001")}              # covid_test_positive


def test_negative_test_has_no_covid_condition():
    made, _ = run(patient_row(covid_test_positive="N"))
    assert f"Condition/{PID}-covid-19" not in made
    assert codes(made[f"Observation/{PID}-sars-cov-2"]["valueCodeableConcept"]) == {(SCT, "260415000")}


def test_pregnancy_icu_and_genbank(full):
    made, _ = full
    assert codes(made[f"Observation/{PID}-pregnancy"]["valueCodeableConcept"]) == {(SCT, "77386006")}
    assert made[f"Observation/{PID}-icu-admissions"]["valueInteger"] == 2             # icu_admits
    stays = [k for k in made if k.startswith("Encounter/")]                             # icu_admit
    assert sorted(stays) == [f"Encounter/{PID}-icu-1", f"Encounter/{PID}-icu-2"]
    assert codes(made[stays[0]]["type"][0]) == {(SCT, "305351004")}
    seq = made[f"MolecularSequence/{PID}-genbank"]                                      # genbank_accession
    assert seq["repository"][0]["datasetId"] == "MW123456.1"
    assert seq["repository"][0]["url"] == "https://www.ncbi.nlm.nih.gov/nuccore/MW123456.1"
    assert seq["referenceSeq"]["referenceSeqId"]["coding"][0]["code"] == "NC_045512.2"


def test_male_patient_has_no_pregnancy_observation():
    made, _ = run(patient_row(sex="M", current_pregnant="N"))
    assert made[f"Patient/{PID}"]["gender"] == "male"
    assert f"Observation/{PID}-pregnancy" not in made


def test_imaging_row_columns(full):
    made, _ = full
    findings = made[f"Observation/{PID}-img1-findings"]
    assert findings["valueString"] == "Bilateral patchy airspace disease"   # radiologist_key_findings
    assert findings["category"][0]["coding"][0]["code"] == "imaging"
    assert findings["derivedFrom"] == [{"reference": f"ImagingStudy/{STUDY_UID}"}]
    assert findings["effectiveDateTime"] == "2019-05-03"
    assert findings["method"]["coding"][0]["code"] == "DX"                  # study_modality
    days, hours = findings["component"]
    assert days["valueQuantity"]["value"] == 2 and days["valueQuantity"]["code"] == "d"
    assert hours["valueQuantity"]["value"] == 50.5 and hours["valueQuantity"]["code"] == "h"
    report = made[f"DiagnosticReport/{PID}-img1-report"]
    assert report["code"]["text"] == "XR CHEST AP PORTABLE"                # image_study_description
    assert report["conclusion"] == "Bilateral patchy airspace disease"
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{STUDY_UID}"}]


@pytest.mark.parametrize("cell, dar, warned", [("", "unknown", False), ("unknown", "asked-unknown", True),
                                               ("thirty", "error", True), ("900", "error", True)])
def test_bmi_blank_unknown_garbage_become_data_absent(cell, dar, warned):
    made, report = run(patient_row(latest_bmi=cell))
    obs = made[f"Observation/{PID}-bmi"]
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == dar
    assert (report.warnings > 0) is warned
    assert sum(n for (rule, col, _k), n in report.cells.items() if col == "latest_bmi") == 1


def test_garbage_cells_are_skipped_with_a_counted_warning():
    made, report = run(patient_row(sex="X", race="MARTIAN", tuberculosis="maybe", age="", zip="72",
                                   icu_admits="two", latest_height="tall"),
                       imaging_row(fio2_time_of_img_study="", study_modality="??"))
    patient = made[f"Patient/{PID}"]
    assert "gender" not in patient and "extension" not in patient and "address" not in patient
    assert f"Condition/{PID}-tuberculosis" not in made
    assert f"Observation/{PID}-age" not in made
    assert not [k for k in made if k.startswith("Encounter/")]
    assert made[f"Observation/{PID}-height"]["dataAbsentReason"]["coding"][0]["code"] == "error"
    assert made[f"Observation/{PID}-img1-fio2"]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert "method" not in made[f"Observation/{PID}-img1-findings"]
    kinds = {(col, kind) for (_r, col, kind), _n in report.cells.items()}
    assert {("sex", "invalid"), ("race", "invalid"), ("tuberculosis", "invalid"), ("age", "blank"),
            ("zip", "invalid"), ("icu_admits", "invalid"), ("latest_height", "invalid")} <= kinds
    assert not report.rejected
    for resource in made.values():
        resources.validate(resource)


def test_unlinked_imaging_row_keeps_its_data_without_a_reference():
    report = MapReport()
    made = ENGINE.map_patient(PID, [], [(1, imaging_row())], Links(), report)
    findings = next(r for r in made if r["id"].endswith("-findings"))
    assert "derivedFrom" not in findings and "partOf" not in findings
    assert report.cells[("findings", "imaging_study", "unmatched")] == 1


def test_required_bindings_are_checked_by_the_engine():
    engine = ENGINE
    assert engine.binding_problem({"resourceType": "Patient", "gender": "F"})
    assert engine.binding_problem({"resourceType": "Observation", "status": "done"})
    assert engine.binding_problem({"resourceType": "Patient", "gender": "female"}) is None


def test_the_spec_covers_every_dictionary_column():
    spec = ENGINE.spec
    used = {(r.sheet, v.column) for r in spec.rules for v in r.values.values() if v.column}
    for sheet, columns in spec.columns.items():
        missing = {c for c in columns if c != "patient_id"} - {c for s, c in used if s == sheet}
        assert not missing, f"{sheet}: no rule reads {sorted(missing)}"
