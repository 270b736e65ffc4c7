"""Writes: re-importing the sheet rebuilds resources idempotently, and ImagingStudy follows the
archive as instances arrive (no re-import needed)."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from gateway.archive.local import open_local
from gateway.ingest.clinical import import_clinical
from gateway.config import Settings
from tests.support.clinical import COMORBIDITY_FLAGS, read_rows, write_rows
from tests.support.procs import start_gateway


@pytest.fixture
def writable_server(data_copy: Path, artifacts_dir: Path):
    server = start_gateway(data_copy, artifacts_dir / "logs", workers=1)
    yield server
    server.stop()


def fetch(server, path: str) -> requests.Response:
    return requests.get(f"{server.url}/fhir/{path}", timeout=30)


def everything(server, pid: str) -> dict[str, str]:
    bundle = fetch(server, f"Patient/{pid}/$everything?_type=Patient,Condition,Observation,Encounter").json()
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]["meta"]["versionId"]
            for e in bundle["entry"]}


def test_reimport_is_idempotent_and_changes_only_what_changed(writable_server, data_copy, small_cohort, tmp_path):
    archive = open_local(Settings().replace(data_dir=data_copy))
    rows = read_rows(small_cohort.clinical_csv)
    flags = COMORBIDITY_FLAGS
    index = next((i for i, r in enumerate(rows) if any(r[c] == "Y" for c in flags)), 0)
    row = rows[index]
    pid = row["patient_id"]
    before = everything(writable_server, pid)
    assert before and set(before.values()) == {"1"}

    import_clinical(archive, small_cohort.xlsx)                       # same sheet again
    assert everything(writable_server, pid) == before

    flagged = next((c for c in flags if row[c] == "Y"), None)
    row["latest_bmi"] = "44.4"                                         # one value changes
    if flagged:
        row[flagged] = "N"                                             # one condition goes
    import_clinical(archive, write_rows(rows, tmp_path / "clinical.csv"))
    after = everything(writable_server, pid)
    bmi = f"Observation/{pid}-bmi"
    assert after[bmi] == "2"
    assert fetch(writable_server, bmi).json()["valueQuantity"]["value"] == 44.4
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {bmi}
    removed = set(before) - set(after)
    if flagged:
        assert len(removed) == 1 and fetch(writable_server, removed.pop()).status_code == 404


def test_imaging_study_follows_the_archive(writable_server, data_copy, small_cohort, tmp_path):
    source = next(p for p in Path(small_cohort.root).rglob("*.dcm"))
    ds = pydicom.dcmread(source)
    pid = str(ds.PatientID)
    before = fetch(writable_server, f"ImagingStudy?patient={pid}").json()["total"]
    study, series = generate_uid(), generate_uid()
    archive = open_local(Settings().replace(data_dir=data_copy))
    for number in (1, 2):
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = tmp_path / f"new{number}.dcm"
        ds.save_as(path)
        assert archive.store(path).ok
        found = fetch(writable_server, f"ImagingStudy/{study}")
        assert found.status_code == 200
        assert found.json()["numberOfInstances"] == number
        assert found.json()["series"][0]["numberOfInstances"] == number
    assert fetch(writable_server, f"ImagingStudy?patient={pid}").json()["total"] == before + 1
    hit = fetch(writable_server, f"ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study}").json()
    assert [e["resource"]["id"] for e in hit["entry"]] == [study]
