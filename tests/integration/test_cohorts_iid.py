"""IHE Invoke Image Display: ``/IHEInvokeImageDisplay`` redirects to the viewer with the studies
asked for (by UID, or a patient's, filtered and most recent first), and every ImagingStudy
carries an ``ihe-iid`` Endpoint whose address is that request for the study. Against gunicorn
on the 6-patient archive; expected studies come from the DICOM files."""
from __future__ import annotations

from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import pydicom
import pytest
import requests

from gateway.clinical import resources

TAGS = ["StudyInstanceUID", "PatientID", "StudyDate", "StudyTime", "Modality"]


@pytest.fixture(scope="module")
def studies(small_cohort) -> dict[str, list[tuple[str, str, set[str]]]]:
    """PatientID → [(StudyDate+StudyTime, StudyInstanceUID, modalities)], newest first."""
    found: dict[str, dict] = {}
    for path in small_cohort.root.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)
        entry = found.setdefault(ds.StudyInstanceUID, [str(ds.PatientID), ds.StudyDate +
                                                       str(ds.get("StudyTime", "")), set()])
        entry[2].add(ds.Modality)
    out: dict[str, list] = defaultdict(list)
    for uid, (pid, when, modalities) in found.items():
        out[pid].append((when, uid, modalities))
    return {pid: sorted(items, reverse=True) for pid, items in out.items()}


def invoke(server, **params: str) -> requests.Response:
    return requests.get(f"{server.url}/IHEInvokeImageDisplay", params=params,
                        allow_redirects=False, timeout=30)


def opened(response: requests.Response, server) -> list[str]:
    assert response.status_code == 302, response.text
    target = urlsplit(response.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{server.url}/viewer/viewer"
    return parse_qs(target.query)["StudyInstanceUIDs"][0].split(",")


def test_study_request_opens_those_studies(gateway_server, studies):
    uids = [items[0][1] for items in studies.values()][:2]
    assert opened(invoke(gateway_server, requestType="STUDY", studyUID=",".join(uids)),
                  gateway_server) == uids


def test_patient_request_opens_the_patients_studies_most_recent_first(gateway_server, studies):
    pid, items = max(studies.items(), key=lambda kv: len(kv[1]))
    assert len(items) > 1
    assert opened(invoke(gateway_server, requestType="PATIENT", patientID=pid),
                  gateway_server) == [uid for _, uid, _ in items]
    assert opened(invoke(gateway_server, requestType="PATIENT", patientID=f"{pid}^^^&1.2.3&ISO",
                         mostRecentResults="1"), gateway_server) == [items[0][1]]
    oldest = items[-1][0][:8]
    since = f"{oldest[:4]}-{oldest[4:6]}-{oldest[6:]}"
    assert opened(invoke(gateway_server, requestType="PATIENT", patientID=pid,
                         upperDateTime=since + "T23:59:59"), gateway_server) == [
        uid for when, uid, _ in items if when[:8] <= oldest]


def test_patient_request_by_modality(gateway_server, studies):
    pid, items = next((p, i) for p, i in studies.items() if any("CT" in m for *_, m in i))
    assert opened(invoke(gateway_server, requestType="PATIENT", patientID=pid,
                         modalitiesInStudy="CT"), gateway_server) == [
        uid for _, uid, m in items if "CT" in m]


@pytest.mark.parametrize("params, status, field", [
    ({"requestType": "SERIES"}, 400, "requestType"),
    ({"requestType": "STUDY"}, 400, "studyUID"),
    ({"requestType": "STUDY", "studyUID": "1.2.3.999"}, 404, "studyUID"),
    ({"requestType": "PATIENT", "patientID": "NO-SUCH-PATIENT"}, 404, "patientID"),
    ({"requestType": "PATIENT", "patientID": "P*"}, 400, "patientID"),
    ({"requestType": "PATIENT", "patientID": "x", "mostRecentResults": "0"}, 400,
     "mostRecentResults"),
    ({"requestType": "PATIENT", "patientID": "x", "lowerDateTime": "soon"}, 400, "lowerDateTime"),
])
def test_bad_or_unanswerable_requests(gateway_server, params, status, field):
    response = invoke(gateway_server, **params)
    assert response.status_code == status and response.json()["field"] == field


def test_imaging_study_carries_an_ihe_iid_endpoint_that_opens_it(gateway_server):
    bundle = requests.get(f"{gateway_server.url}/fhir/ImagingStudy?_count=3", timeout=30).json()
    for entry in bundle["entry"]:
        study = entry["resource"]
        resources.validate(study)
        assert study["endpoint"][0]["reference"] == "Endpoint/dicomweb"  # DICOMweb stays first
        assert {"reference": "#iid"} in study["endpoint"]
        (iid,) = [c for c in study["contained"] if c["id"] == "iid"]
        assert iid["connectionType"]["code"] == "ihe-iid"
        assert iid["connectionType"]["system"] == (
            "http://terminology.hl7.org/CodeSystem/endpoint-connection-type")
        followed = requests.get(iid["address"], allow_redirects=False, timeout=30)
        assert opened(followed, gateway_server) == [study["id"]]
