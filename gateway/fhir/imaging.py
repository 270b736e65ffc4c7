"""ImagingStudy and Endpoint, built from the archive on every request (Archive protocol only).

Nothing is copied into the FHIR tables, so a study imported, STOWed or C-STOREd a moment ago is
already an ImagingStudy, with today's series and instance counts. Two archive searches per
page: the studies, then their series (one UID-list query).
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
from typing import Any, Callable, Iterable, Mapping

import orjson

from ..archive.protocol import Archive, Level, Query
from ..archive.uids import is_uid
from ..clinical.collections import CollectionFacts, collection_extensions, collection_tag
from ..links import IID_CONNECTION, iid_study_url, viewer_extension
from . import search as S
from .outcome import invalid, not_supported

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
ENDPOINT_REF = "Endpoint/{id}"


def _first(item: Mapping, tag: str) -> Any:
    return (item.get(tag, {}).get("Value") or [None])[0]


SMART_IMAGING = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/"
SMART_WADO_ENDPOINT = SMART_IMAGING + "smart-wado-endpoint"
REQUIRES_ACCESS_TOKEN = SMART_IMAGING + "requires-access-token"


def _versioned(resource: dict) -> dict:
    """Archive-built resources carry a content hash as versionId (no stored history)."""
    digest = hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    meta = {"versionId": digest, **resource.get("meta", {})}
    return {"resourceType": resource["resourceType"], "id": resource["id"],
            "meta": meta, **{k: v for k, v in resource.items()
                             if k not in ("resourceType", "id", "meta")}}


class ImagingBuilder:
    """Turns archive query results into ImagingStudy/Endpoint resources (fixed parts: imaging.yaml)."""

    def __init__(self, config: Mapping[str, Any], public_base: Callable[[], str], *,
                 requires_token: bool | None = None,
                 facts: Callable[[], Mapping[str, CollectionFacts]] = dict) -> None:
        """``public_base()`` gives the base of absolute links for the current request;
        ``requires_token`` says whether DICOMweb retrievals need the FHIR search's token
        (None: access control is off, the Endpoint says nothing about tokens); ``facts()``
        the collections' citations and licences (idc-index-data), which a study of a
        collection carries."""
        self.config = config
        self._public_base = public_base
        self._facts = facts
        self.requires_token = requires_token
        self.modality_system = config["modality_system"]
        self.endpoint_id = config["endpoint"]["id"]

    @property
    def public_base(self) -> str:
        return self._public_base().rstrip("/")

    # --------------------------------------------------------------- Endpoint
    def endpoint(self) -> dict:
        body = {"resourceType": "Endpoint", **copy.deepcopy(dict(self.config["endpoint"]))}
        body["address"] = f"{self.public_base}/dicomweb"
        if self.requires_token is not None:  # SMART Imaging Access 0.1.0: smart-wado-endpoint
            body["meta"] = {"profile": [SMART_WADO_ENDPOINT]}
            body["extension"] = [{"url": REQUIRES_ACCESS_TOKEN,
                                  "valueBoolean": self.requires_token}]
        return _versioned(body)

    def endpoints(self, request: S.SearchRequest) -> list[dict]:
        """The one Endpoint, if it matches the (token) clauses."""
        resource = self.endpoint()
        for clause in request.clauses:
            field = clause.param.paths[0]
            value = resource.get(field)
            codes = [(c.get("system"), c.get("code")) for c in ([value] if isinstance(value, dict) else [])]
            codes = codes or [(None, value)]
            hit = any((s is S.ANY or s == sys) and (c is S.ANY or c == code)
                      for s, c in clause.values for sys, code in codes)
            if hit == (clause.modifier == "not"):
                return []
        return [resource]

    # ----------------------------------------------------------- ImagingStudy
    def read(self, archive: Archive, uid: str) -> dict | None:
        if not is_uid(uid):
            return None
        found = archive.search(Query(Level.STUDY, {"StudyInstanceUID": uid}))
        studies = self._build(archive, found.matches)
        return studies[0] if studies else None

    def for_patients(self, archive: Archive, patient_ids: Iterable[str]) -> list[dict]:
        matches: list[dict] = []
        for pid in dict.fromkeys(patient_ids):
            if pid and not any(c in pid for c in "*?\\"):
                matches += archive.search(Query(Level.STUDY, {"PatientID": pid})).matches
        return self._build(archive, matches)

    def search(self, archive: Archive, request: S.SearchRequest) -> tuple[list[dict], int]:
        """One page of ImagingStudy matches and the total."""
        matches = [m for filters in self._filters(request)
                   for m in archive.search(Query(Level.STUDY, filters)).matches]
        dates = [c for c in request.clauses if c.param.name == "started"]
        matches = [m for m in matches if all(_date_ok(c, _first(m, "00080020")) for c in dates)]
        matches = sort_matches(matches, request.sort)
        page = matches[request.offset: request.offset + request.count] if request.count else []
        return self._build(archive, page), len(matches)

    def _filters(self, request: S.SearchRequest) -> list[dict]:
        filters: dict[str, str] = {}
        patients: set[str] | None = None
        uids: set[str] | None = None
        for clause in request.clauses:
            name = clause.param.name
            if clause.modifier:
                raise not_supported(400, f"Modifier :{clause.modifier} is not supported on "
                                         f"ImagingStudy {name}", f"{name}:{clause.modifier}")
            if name in ("patient", "subject"):
                patients = set(clause.values) if patients is None else patients & set(clause.values)
            elif name in ("_id", "identifier"):
                found = {self._uid(name, system, code) for system, code in clause.values}
                uids = found if uids is None else uids & found
            elif name == "modality":
                filters["ModalitiesInStudy"] = "\\".join(self._modality(s, c) for s, c in clause.values)
            elif name == "started":
                filters["StudyDate"] = _dicom_range(clause)
        if uids is not None:
            uids = {u for u in uids if is_uid(u)}
            if not uids:
                return []
            filters["StudyInstanceUID"] = "\\".join(sorted(uids))
        if patients is None:
            return [filters]
        return [{**filters, "PatientID": p} for p in sorted(patients)
                if p and not any(c in p for c in "*?\\")]

    def _uid(self, name: str, system: Any, code: Any) -> str:
        if code is S.ANY:
            raise invalid(f"{name} needs a value", name)
        if name == "identifier" and system not in (S.ANY, self.config["identifier_system"]):
            return ""  # another identifier system: nothing of ours matches
        return code[len("urn:oid:"):] if code.startswith("urn:oid:") else code

    def _modality(self, system: Any, code: Any) -> str:
        if code is S.ANY or system not in (S.ANY, self.modality_system):
            raise invalid("modality takes a DICOM (DCM) modality code", "modality")
        return code

    def _build(self, archive: Archive, studies: list[dict]) -> list[dict]:
        if not studies:
            return []
        uids = [_first(s, "0020000D") for s in studies]
        series = archive.search(Query(Level.SERIES, {"StudyInstanceUID": "\\".join(uids)})).matches
        by_study: dict[str, list[dict]] = {}
        for item in series:
            by_study.setdefault(_first(item, "0020000D"), []).append(item)
        collections = archive.study_collections(uids)
        return [self._study(s, by_study.get(uid, []), collections.get(uid))
                for s, uid in zip(studies, uids, strict=True)]

    def study(self, study: dict, series: list[dict], collection: str | None = None) -> dict:
        """The ImagingStudy of a study-level match and its series-level matches (DICOM JSON)
        in ``collection``."""
        return self._study(study, series, collection)

    def _coding(self, code: str | None) -> dict:
        code = code or "OT"  # R4 needs series.modality; a series without Modality is "Other"
        coding = {"system": self.modality_system, "code": code}
        display = self.config.get("modalities", {}).get(code)
        return {**coding, "display": display} if display else coding

    def _study(self, study: dict, series: list[dict], collection: str | None = None) -> dict:
        uid = _first(study, "0020000D")
        pid = str(_first(study, "00100020") or "")
        extensions = [viewer_extension(self.public_base, uid)]  # opens it in /viewer/
        if collection:  # its ResearchStudy, citation and licence (docs/collections.md)
            extensions += collection_extensions(collection, self._facts().get(collection))
        resource: dict[str, Any] = {
            "resourceType": "ImagingStudy", "id": uid,
            **({"meta": {"tag": [collection_tag(collection)]}} if collection else {}),
            "extension": extensions,
            "identifier": [{"system": self.config["identifier_system"], "value": f"urn:oid:{uid}"}],
            "status": "available",
            "modality": [self._coding(m) for m in (study.get("00080061", {}).get("Value") or [])],
            "subject": ({"reference": f"Patient/{pid}"} if FHIR_ID.match(pid)
                        else {"display": pid or "unknown patient"}),
        }
        started = _iso_date(_first(study, "00080020"))
        if started:
            resource["started"] = started  # date precision: DICOM dates carry no time zone
        resource["contained"] = [self._iid_endpoint(uid)]
        resource["endpoint"] = [{"reference": ENDPOINT_REF.format(id=self.endpoint_id)},
                                {"reference": "#iid"}]
        resource["numberOfSeries"] = int(_first(study, "00201206") or len(series))
        resource["numberOfInstances"] = int(_first(study, "00201208") or 0)
        if _first(study, "00081030"):
            resource["description"] = str(_first(study, "00081030"))
        resource["series"] = [self._series(s) for s in sorted(
            series, key=lambda s: (_first(s, "00200011") or 0, _first(s, "0020000E")))]
        return _versioned(resource)

    def _iid_endpoint(self, uid: str) -> dict:
        """This study in the viewer through IHE IID (links.py), as a contained Endpoint."""
        return {"resourceType": "Endpoint", "id": "iid", "status": "active",
                "connectionType": IID_CONNECTION, "name": "View in the bundled viewer (IHE IID)",
                "payloadType": [{"text": "DICOM study display"}],
                "address": iid_study_url(self.public_base, uid)}

    def _series(self, item: dict) -> dict:
        out: dict[str, Any] = {"uid": _first(item, "0020000E")}
        if _first(item, "00200011") is not None:
            out["number"] = int(_first(item, "00200011"))
        out["modality"] = self._coding(_first(item, "00080060"))
        if _first(item, "0008103E"):
            out["description"] = str(_first(item, "0008103E"))
        out["numberOfInstances"] = int(_first(item, "00201209") or 0)
        return out


_SORT_VALUES: dict[str, Callable[[dict, bool], Any]] = {
    "started": lambda m, _d: (str(_first(m, "00080020")), str(_first(m, "00080030") or ""))
    if _iso_date(_first(m, "00080020")) else None,
    "patient": lambda m, _d: _first(m, "00100020") or None,
    "modality": lambda m, d: (max if d else min)(m.get("00080061", {}).get("Value") or [None]),
    "_id": lambda m, _d: _first(m, "0020000D"),
}
_SORT_VALUES.update(subject=_SORT_VALUES["patient"], identifier=_SORT_VALUES["_id"])


def sort_matches(matches: list[dict], keys: tuple) -> list[dict]:
    """``_sort`` over study matches as the SQL path sorts them: each key in turn (least
    significant first, stable), a study without a value last; else storage order."""
    for key in reversed(keys):
        value = _SORT_VALUES[key.param.name]
        present = [m for m in matches if value(m, key.descending) is not None]
        present.sort(key=lambda m: value(m, key.descending), reverse=key.descending)
        matches = present + [m for m in matches if value(m, key.descending) is None]
    return matches


def _iso_date(value: Any) -> str | None:
    try:
        return dt.datetime.strptime(str(value), "%Y%m%d").date().isoformat()
    except (TypeError, ValueError):
        return None


def _date_ok(clause: S.Clause, dicom_date: Any) -> bool:
    day = _iso_date(dicom_date)
    if day is None:
        return False
    found = S.date_range(day)
    if found is None:
        return False
    lo, hi = found
    return any(S.date_matches(prefix, q_lo, q_hi, lo, hi) for prefix, q_lo, q_hi in clause.values)


def _dicom_range(clause: S.Clause) -> str:
    """A coarse DICOM StudyDate range covering the clause (exact test: ``_date_ok``)."""
    lows, highs = [], []
    for prefix, q_lo, q_hi in clause.values:
        if prefix in ("ne",):
            return ""
        if prefix in ("eq", "ge", "gt", "sa"):
            lows.append(q_lo[:10].replace("-", ""))
        if prefix in ("eq", "le", "lt", "eb"):
            highs.append(q_hi[:10].replace("-", ""))
        if prefix in ("le", "lt", "eb"):
            lows.append("")
        if prefix in ("ge", "gt", "sa"):
            highs.append("")
    low = "" if "" in lows or not lows else min(lows)
    high = "" if "" in highs or not highs else max(highs)
    return f"{low}-{high}" if (low or high) else ""
