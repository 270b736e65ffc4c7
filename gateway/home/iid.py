"""IHE Invoke Image Display (IHE RAD TF-2 4.106): ``GET /IHEInvokeImageDisplay`` redirects (302)
to the bundled viewer opened on the studies it names.

``requestType=STUDY&studyUID=<uid>[,<uid>]``: those studies (unknown UIDs: 404).
``requestType=PATIENT&patientID=<id>`` (an HL7 CX value is cut at its first ``^``), optionally
``mostRecentResults=N``, ``lowerDateTime``/``upperDateTime`` (ISO 8601; the date part bounds
StudyDate) and ``modalitiesInStudy=CT,DX``: the patient's matching studies, most recent first.
Errors are the gateway's JSON (``status``, ``reason``, ``field``).
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .. import context
from ..archive.protocol import Level, Query
from ..archive.uids import is_uid
from ..links import IID_PATH, viewer_studies_url

bp = Blueprint("iid", __name__)
MAX_STUDIES = 200


class IidError(Exception):
    def __init__(self, status: int, reason: str, field: str | None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.field = status, reason, field


@bp.get(IID_PATH)
def invoke() -> Response:
    kind = request.args.get("requestType", "")
    uids = _patient_studies() if kind == "PATIENT" else _studies() if kind == "STUDY" else None
    if uids is None:
        raise IidError(400, "requestType must be STUDY or PATIENT", "requestType")
    return Response(status=302, headers={"Location": viewer_studies_url(context.public_base(),
                                                                        uids)})


def _studies() -> list[str]:
    uids = [u.strip() for u in request.args.get("studyUID", "").split(",") if u.strip()]
    if not uids or not all(is_uid(u) for u in uids):
        raise IidError(400, "studyUID must be one or more Study Instance UIDs", "studyUID")
    found = context.archive().search(Query(Level.STUDY, {"StudyInstanceUID": "\\".join(uids)},
                                           limit=len(uids)))
    known = {m["0020000D"]["Value"][0] for m in found.matches}
    missing = [u for u in uids if u not in known]
    if missing:
        raise IidError(404, f"no study {missing[0]}", "studyUID")
    return uids


def _patient_studies() -> list[str]:
    pid = request.args.get("patientID", "").split("^")[0].strip()
    if not pid or any(c in pid for c in "*?\\"):
        raise IidError(400, "patientID must name one patient", "patientID")
    filters = {"PatientID": pid, "StudyDate": _date_range(), "StudyTime": ""}
    modalities = request.args.get("modalitiesInStudy", "")
    if modalities:
        filters["ModalitiesInStudy"] = "\\".join(m.strip() for m in modalities.split(","))
    found = context.archive().search(Query(Level.STUDY, {k: v for k, v in filters.items()},
                                           limit=MAX_STUDIES)).matches
    found.sort(key=lambda m: (_value(m, "00080020"), _value(m, "00080030")), reverse=True)
    most = request.args.get("mostRecentResults", "")
    if most:
        if not most.isdigit() or int(most) < 1:
            raise IidError(400, "mostRecentResults must be a positive number", "mostRecentResults")
        found = found[: int(most)]
    if not found:
        raise IidError(404, f"no studies of patient {pid[:64]} match", "patientID")
    return [m["0020000D"]["Value"][0] for m in found]


def _date_range() -> str:
    """lowerDateTime/upperDateTime as a DICOM DA range (empty: any date)."""
    def day(name: str) -> str:
        text = request.args.get(name, "").strip()
        digits = text[:10].replace("-", "")
        if text and (len(digits) != 8 or not digits.isdigit()):
            raise IidError(400, f"{name} must be an ISO 8601 date or date-time", name)
        return digits
    lower, upper = day("lowerDateTime"), day("upperDateTime")
    return f"{lower}-{upper}" if lower or upper else ""


def _value(match: dict, tag: str) -> str:
    return str((match.get(tag, {}).get("Value") or [""])[0])


@bp.errorhandler(IidError)
def _error(error: IidError) -> Response:
    response = jsonify(status=error.status, reason=error.reason, field=error.field)
    response.status_code = error.status
    return response
