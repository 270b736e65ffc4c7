"""Deep links into the bundled viewer, for FHIR ImagingStudy (pure functions, no Flask).

Here, below both, because two faces share them: the viewer serves at ``VIEWER_MOUNT`` and
FHIR links to it; neither face imports the other.

OHIF opens a study at ``/viewer/viewer?StudyInstanceUIDs=<uid>`` (mode "viewer", the
basic one). The FHIR layer puts that URL on each ImagingStudy as an extension with
``valueUrl`` (``viewer_extension``): the link is per study, whereas an Endpoint's
``address`` is a service base shared by many studies, and the R4 connection type for
viewers (``ihe-iid``) implies the IHE IID URL grammar OHIF does not speak.
"""
from __future__ import annotations

from urllib.parse import urlencode

VIEWER_MOUNT = "/viewer"  # where the viewer blueprint serves the build (no trailing slash)

# A stable logical name (valid R4 ``uri``); no StructureDefinition is published for it.
VIEWER_EXTENSION_URL = "urn:tcia-gateway:fhir:extension:imagingstudy-viewer-url"
OHIF_MODE = "viewer"


def viewer_study_url(public_base: str, study_uid: str) -> str:
    """Absolute URL that opens ``study_uid`` in the bundled OHIF viewer."""
    base = public_base.rstrip("/")
    return f"{base}{VIEWER_MOUNT}/{OHIF_MODE}?{urlencode({'StudyInstanceUIDs': study_uid})}"


def viewer_extension(public_base: str, study_uid: str) -> dict[str, str]:
    """The ImagingStudy ``extension`` entry carrying the viewer link (R4 JSON)."""
    return {"url": VIEWER_EXTENSION_URL, "valueUrl": viewer_study_url(public_base, study_uid)}


# IHE Invoke Image Display (IHE RAD TF-2 4.106, IID): an EHR's "show images" button. The
# gateway answers it by redirecting to the viewer (gateway/home/iid.py); ImagingStudy carries an
# Endpoint of connection type ``ihe-iid`` whose address opens that study.
IID_PATH = "/IHEInvokeImageDisplay"
IID_CONNECTION = {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                  "code": "ihe-iid", "display": "IHE IID"}


def iid_study_url(public_base: str, study_uid: str) -> str:
    base = public_base.rstrip("/")
    return f"{base}{IID_PATH}?{urlencode({'requestType': 'STUDY', 'studyUID': study_uid})}"


def viewer_studies_url(public_base: str, study_uids: list[str]) -> str:
    """The viewer opened on several studies (OHIF takes a comma-separated list)."""
    base = public_base.rstrip("/")
    return (f"{base}{VIEWER_MOUNT}/{OHIF_MODE}?"
            f"{urlencode({'StudyInstanceUIDs': ','.join(study_uids)}, safe=',')}")
