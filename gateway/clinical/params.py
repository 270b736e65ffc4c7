"""The FHIR search parameters this server supports, as data (R4 search, per resource type).

Listed once: the CapabilityStatement, the face's request parser and the repository's index
columns all read ``PARAMS``, so what is advertised is what works. Also the parsed form of a
search clause and the value normalisation the index stores and the parser compares with.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

ANY = object()  # token: any system / any code


@dataclass(frozen=True)
class Param:
    name: str
    type: str               # token | string | date | reference | quantity | text | composite
    paths: tuple[str, ...]  # dotted element paths the value comes from
    doc: str = ""
    targets: tuple[str, ...] = ("Patient",)  # reference: the types it may point at
    url: str | None = None  # the first `extension` step of the paths keeps this url only
    components: tuple["Param", ...] = ()  # composite: its parts, in `$` order


def _p(name: str, kind: str, *paths: str, doc: str = "", **extra: Any) -> Param:
    return Param(name, kind, paths, doc, **extra)


US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


_PATIENT = _p("patient", "reference", "subject", doc="The patient (subject) the resource is about")
_SUBJECT = _p("subject", "reference", "subject", doc="Alias of patient")
_ID = _p("_id", "token", "id", doc="Logical id")
_CODE = _p("code", "token", "code")
_VALUE_QUANTITY = _p("value-quantity", "quantity", "valueQuantity")
_VALUE_CONCEPT = _p("value-concept", "token", "valueCodeableConcept")

PARAMS: dict[str, dict[str, Param]] = {
    "Patient": {p.name: p for p in (
        _ID, _p("identifier", "token", "identifier"), _p("name", "string", "name"),
        _p("gender", "token", "gender"), _p("birthdate", "date", "birthDate"),
        _p("deceased", "token", "deceasedBoolean"),
        _p("address-postalcode", "string", "address.postalCode"),
        # US Core 6.1 SearchParameter us-core-race: Patient.extension(us-core-race).extension.value.code
        _p("race", "token", "extension.extension.valueCoding", url=US_CORE_RACE,
           doc="US Core race (OMB category or detailed code, urn:oid:2.16.840.1.113883.6.238)"))},
    "Condition": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("category", "token", "category"),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"), _p("code", "token", "code"),
        _p("onset-date", "date", "onsetDateTime"))},
    "Observation": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("category", "token", "category"), _CODE,
        _p("date", "date", "effectiveDateTime"), _p("status", "token", "status"),
        _VALUE_QUANTITY, _VALUE_CONCEPT,
        _p("code-value-quantity", "composite", components=(_CODE, _VALUE_QUANTITY),
           doc="Code and quantity value of the same Observation: code$[prefix]number"),
        _p("code-value-concept", "composite", components=(_CODE, _VALUE_CONCEPT),
           doc="Code and coded value of the same Observation: code$[system|]code"),
        _p("derived-from", "reference", "derivedFrom", targets=("ImagingStudy",),
           doc="The ImagingStudy the Observation was derived from"),
        _p("part-of", "reference", "partOf", targets=("ImagingStudy",),
           doc="The ImagingStudy the Observation is part of"),
        _p("_content", "text", "valueString", "code.text",
           doc="Text search: a phrase anywhere in the value text or code text"))},
    "DiagnosticReport": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("category", "token", "category"), _CODE,
        _p("date", "date", "effectiveDateTime"), _p("status", "token", "status"),
        _p("_content", "text", "conclusion", "code.text",
           doc="Text search: a phrase anywhere in the conclusion or code text"))},
    "Encounter": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("class", "token", "class"), _p("type", "token", "type"),
        _p("status", "token", "status"), _p("date", "date", "period"))},
    "MolecularSequence": {p.name: p for p in (
        _ID, _p("patient", "reference", "patient"), _p("type", "token", "type"))},
    "ImagingStudy": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("identifier", "token", "identifier"),
        _p("started", "date", "started"), _p("modality", "token", "modality"))},
    "Endpoint": {p.name: p for p in (
        _ID, _p("connection-type", "token", "connectionType"), _p("status", "token", "status"))},
    # Collections (gateway/clinical/collections.py): R4 SearchParameters of ResearchStudy
    # (identifier, title, status) and ResearchSubject (individual = patient, study, status)
    "ResearchStudy": {p.name: p for p in (
        _ID, _p("identifier", "token", "identifier"), _p("title", "string", "title"),
        _p("status", "token", "status"))},
    "ResearchSubject": {p.name: p for p in (
        _ID, _p("individual", "reference", "individual", doc="The subject (Patient)"),
        _p("patient", "reference", "individual", doc="Alias of individual"),
        _p("study", "reference", "study", targets=("ResearchStudy",),
           doc="The collection's ResearchStudy"),
        _p("identifier", "token", "identifier"), _p("status", "token", "status"))},
}
STORED = ("Patient", "Condition", "Observation", "DiagnosticReport", "Encounter", "MolecularSequence",
          "ResearchStudy", "ResearchSubject")
MAPPED = STORED[:6]  # what the clinical sheet mapping makes (ingest/rebuild.py replaces these)
# _include / _revinclude values we follow: (source type, parameter) -> target type
INCLUDES: dict[tuple[str, str], str] = {
    **{(t, p): "Patient" for t in STORED[1:] + ("ImagingStudy",) for p in ("patient", "subject")
       if p in PARAMS[t]},
    ("ImagingStudy", "endpoint"): "Endpoint",
    ("ResearchSubject", "study"): "ResearchStudy",
}


@dataclass(frozen=True)
class Clause:
    """One parameter occurrence: its values are ORed; clauses are ANDed."""

    param: Param
    modifier: str | None
    values: tuple


def normalise(text: str) -> str:
    """Case- and space-insensitive form for string search (R4 search: string matching)."""
    return " ".join(str(text).lower().split())


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def date_range(text: str) -> tuple[str, str] | None:
    """The instant range [lo, hi] a FHIR date/dateTime value covers, as sortable strings."""
    m = _DATE.match(text)
    if not m:
        return None
    year = int(m.group(1))
    month, day, hour, minute, second = (int(g) if g else None for g in m.groups()[1:6])
    try:
        lo = dt.datetime(year, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    except ValueError:
        return None
    try:
        if month is None:
            hi = lo.replace(year=year + 1)
        elif day is None:
            hi = (lo.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        elif hour is None:
            hi = lo + dt.timedelta(days=1)
        elif second is None:
            hi = lo + dt.timedelta(minutes=1)
        else:
            hi = lo + dt.timedelta(seconds=1)
        hi -= dt.timedelta(microseconds=1)
    except (ValueError, OverflowError):  # the range ends with year 9999
        hi = dt.datetime.max
    return lo.isoformat(timespec="microseconds"), hi.isoformat(timespec="microseconds")
