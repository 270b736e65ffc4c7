"""The attributes the index stores, matches and returns, as data.

One row per attribute: where it lives in the index and how it is matched.
Levels and default return keys follow PS3.18 10.6.3.3 (QIDO-RS) and PS3.4 C.6
(Q/R information models); docs/dicomweb.md lists the same set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from pydicom.datadict import dictionary_VR, tag_for_keyword

from .protocol import Level


@dataclass(frozen=True)
class Attribute:
    keyword: str
    tag: str          # 8 upper-case hex digits, as in DICOM JSON
    vr: str
    level: Level      # the table holding the column
    column: str
    computed: bool = False       # maintained by the index, not read from files
    case_insensitive: bool = False  # PN (PS3.4 C.2.2.2.4 allows it) and descriptions


def _a(keyword: str, tag: str, vr: str, level: Level, column: str, **kw: bool) -> Attribute:
    return Attribute(keyword, tag, vr, level, column, **kw)


P, ST, SE, IN = Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE

ATTRIBUTES: tuple[Attribute, ...] = (
    _a("PatientName", "00100010", "PN", P, "patient_name", case_insensitive=True),
    _a("PatientID", "00100020", "LO", P, "patient_id"),
    _a("PatientBirthDate", "00100030", "DA", P, "patient_birth_date"),
    _a("PatientSex", "00100040", "CS", P, "patient_sex"),
    _a("NumberOfPatientRelatedStudies", "00201200", "IS", P, "num_studies", computed=True),
    _a("NumberOfPatientRelatedSeries", "00201202", "IS", P, "num_series", computed=True),
    _a("NumberOfPatientRelatedInstances", "00201204", "IS", P, "num_instances", computed=True),
    _a("StudyInstanceUID", "0020000D", "UI", ST, "study_uid"),
    _a("StudyDate", "00080020", "DA", ST, "study_date"),
    _a("StudyTime", "00080030", "TM", ST, "study_time"),
    _a("AccessionNumber", "00080050", "SH", ST, "accession_number"),
    _a("ModalitiesInStudy", "00080061", "CS", ST, "modalities", computed=True),
    _a("ReferringPhysicianName", "00080090", "PN", ST, "referring_physician_name",
       case_insensitive=True),
    _a("PatientAge", "00101010", "AS", ST, "patient_age"),
    _a("StudyID", "00200010", "SH", ST, "study_id"),
    _a("StudyDescription", "00081030", "LO", ST, "study_description", case_insensitive=True),
    _a("InstitutionName", "00080080", "LO", ST, "institution_name", case_insensitive=True),
    _a("NumberOfStudyRelatedSeries", "00201206", "IS", ST, "num_series", computed=True),
    _a("NumberOfStudyRelatedInstances", "00201208", "IS", ST, "num_instances", computed=True),
    _a("SeriesInstanceUID", "0020000E", "UI", SE, "series_uid"),
    _a("Modality", "00080060", "CS", SE, "modality"),
    _a("SeriesNumber", "00200011", "IS", SE, "series_number"),
    _a("SeriesDescription", "0008103E", "LO", SE, "series_description", case_insensitive=True),
    _a("SeriesDate", "00080021", "DA", SE, "series_date"),
    _a("SeriesTime", "00080031", "TM", SE, "series_time"),
    _a("BodyPartExamined", "00180015", "CS", SE, "body_part_examined"),
    _a("PerformedProcedureStepStartDate", "00400244", "DA", SE, "pps_start_date"),
    _a("PerformedProcedureStepStartTime", "00400245", "TM", SE, "pps_start_time"),
    _a("NumberOfSeriesRelatedInstances", "00201209", "IS", SE, "num_instances", computed=True),
    _a("SOPInstanceUID", "00080018", "UI", IN, "sop_uid"),
    _a("SOPClassUID", "00080016", "UI", IN, "sop_class_uid"),
    _a("InstanceNumber", "00200013", "IS", IN, "instance_number"),
    _a("Rows", "00280010", "US", IN, "rows"),
    _a("Columns", "00280011", "US", IN, "columns"),
    _a("BitsAllocated", "00280100", "US", IN, "bits_allocated"),
    _a("NumberOfFrames", "00280008", "IS", IN, "number_of_frames"),
    _a("TransferSyntaxUID", "00020010", "UI", IN, "transfer_syntax"),
)

BY_KEYWORD: dict[str, Attribute] = {a.keyword: a for a in ATTRIBUTES}
BY_TAG: dict[str, Attribute] = {a.tag: a for a in ATTRIBUTES}

# Returned by default at each level (PS3.18 10.6.3.3.1-3; docs/dicomweb.md, QIDO-RS).
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                    "NumberOfPatientRelatedInstances"),
    Level.STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                  "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
                  "PatientSex", "PatientAge", "StudyInstanceUID", "StudyID",
                  "StudyDescription", "InstitutionName", "NumberOfStudyRelatedSeries",
                  "NumberOfStudyRelatedInstances"),
    Level.SERIES: ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
                   "SeriesDate", "SeriesTime", "BodyPartExamined",
                   "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
                   "NumberOfSeriesRelatedInstances", "StudyInstanceUID"),
    Level.INSTANCE: ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
                     "BitsAllocated", "NumberOfFrames", "TransferSyntaxUID",
                     "StudyInstanceUID", "SeriesInstanceUID"),
}

_DEPTH = {Level.PATIENT: 0, Level.STUDY: 1, Level.SERIES: 2, Level.INSTANCE: 3}


def visible_at(attr: Attribute, level: Level) -> bool:
    """An attribute of ``level`` or of a level above it can be matched and returned."""
    return _DEPTH[attr.level] <= _DEPTH[level]


def resolve(name: str) -> Attribute | str | None:
    """Keyword or 8-hex tag → indexed Attribute, or the tag of a known DICOM
    attribute the index does not hold, or None when ``name`` is no DICOM attribute."""
    key = name.strip()
    if key in BY_KEYWORD:
        return BY_KEYWORD[key]
    if len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key):
        tag = key.upper()
        if tag in BY_TAG:
            return BY_TAG[tag]
        return tag
    tag_int = tag_for_keyword(key)
    if tag_int is None:
        return None
    return f"{tag_int:08X}"


def vr_of(tag: str) -> str:
    try:
        return dictionary_VR(int(tag, 16))
    except KeyError:
        return "UN"


def at_level(level: Level) -> Iterable[Attribute]:
    return (a for a in ATTRIBUTES if a.level is level)
