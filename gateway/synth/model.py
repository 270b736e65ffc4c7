"""The cohort model both generators build and the renderer reads: patients, studies, series.

No pixels here: a model is cheap to build, picklable for the worker processes, and the clinical
sheets and the NBIA ``metadata.csv`` are written from it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from .tables import Finding

UID_NAMESPACE = uuid.UUID("6f1c1d52-4e0e-5a8b-9b61-2b4b8f0a7c31")
# Transfer syntaxes (PS3.5 A.1, A.2, A.4.2 / 10.4 Process 14 SV1, A.4.4, A.4.2 RLE G).
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE})
# Storage SOP classes (PS3.4 B.5).
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
NM_IMAGE = "1.2.840.10008.5.1.4.1.1.20"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
SOP_CLASS_NAMES = {
    CR_IMAGE: "Computed Radiography Image Storage",
    DX_IMAGE: "Digital X-Ray Image Storage - For Presentation",
    CT_IMAGE: "CT Image Storage", MR_IMAGE: "MR Image Storage",
    NM_IMAGE: "Nuclear Medicine Image Storage", SC_IMAGE: "Secondary Capture Image Storage",
    PET_IMAGE: "Positron Emission Tomography Image Storage",
    DOSE_SR: "X-Ray Radiation Dose SR Storage",
}


def make_uid(seed: int, *parts: object) -> str:
    """A deterministic UID under the 2.25 (UUID) root: ≤ 44 chars, no leading zeros."""
    name = "/".join(str(p) for p in (seed, *parts))
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


@dataclass(frozen=True)
class SeriesSpec:
    """One series: what the real index says about it, with synthetic UIDs.

    ``kind`` tells the renderer what to draw: ``xr`` (one radiograph per instance, view from
    ``views``), ``axial`` / ``coronal`` / ``sagittal`` (CT or MR planes of one volume),
    ``mip-coronal`` / ``mip-sagittal`` (slab MIPs), ``projection`` (scouts and locators),
    ``monitor`` (bolus tracking: one level, repeated), ``pet``, ``nm``, ``fused`` (RGB PET/CT),
    ``sr`` (dose report).
    """

    uid: str
    number: int | None
    description: str | None
    views: tuple[str, ...]  # radiographs: AP / PA / LL per instance
    instance_uids: tuple[str, ...]
    modality: str
    sop_class: str
    syntax: str
    photometric: str = "MONOCHROME2"
    pixel_rep: int = 0
    kind: str = "xr"
    manufacturer: str | None = None
    model: str | None = None
    body_part: str | None = "CHEST"
    minutes: int = 0  # SeriesTime after StudyTime
    thickness: float | None = None  # nominal slice (or slab) thickness in mm
    coverage: float | None = None  # axial extent in mm at the bottom of the scan; None: all


@dataclass(frozen=True)
class StudySpec:
    patient_index: int
    ordinal: int  # position in the patient's timeline
    uid: str
    description: str | None
    modality: str  # the study's first modality (the clinical sheet's study_modality)
    when: datetime  # shifted acquisition date-time
    days: int  # calendar days from the (shifted) diagnosis date
    hours: float  # elapsed hours from the diagnosis date-time
    fio2: int | None
    finding: Finding
    series: tuple[SeriesSpec, ...]
    accession: str
    study_id: str = ""
    span_mm: float = 320.0  # CT/MR acquisition length: chest, or chest-abdomen-pelvis

    @property
    def instances(self) -> int:
        return sum(len(s.instance_uids) for s in self.series)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted({s.modality for s in self.series}))


@dataclass(frozen=True)
class PatientSpec:
    index: int
    patient_id: str
    age: int
    sex: str
    race: str
    zip: str
    bmi: float | None
    weight_lb: float | None
    height_in: int | None
    height_text: str | int | None  # `5' 7"` for most rows, plain inches for a few
    comorbidities: tuple[tuple[str, str], ...]
    test_name: str
    icu_admit: bool
    icu_admits: int
    mortality: bool
    genbank: str
    diagnosis: datetime  # shifted
    studies: tuple[StudySpec, ...]


@dataclass(frozen=True)
class Marks:
    """What TCIA stamps on every file of a collection: the CTP private block values."""

    collection: str
    site_name: str
    site_id: str


def marks_for(collection: str) -> Marks:
    """The twin's CTP values: the collection's name, a synthetic site (8 digits, as TCIA's)."""
    site = uuid.uuid5(UID_NAMESPACE, f"site/{collection}").int % 10**8
    return Marks(collection, "SYNTHETIC TWIN SITE", f"{site:08d}")


@dataclass(frozen=True)
class Cohort:
    seed: int
    ct_slices: int
    xr_size: int
    patients: tuple[PatientSpec, ...]
    marks: Marks
    ct_size: int = 512

    @property
    def studies(self) -> list[StudySpec]:
        return [s for p in self.patients for s in p.studies]

    @property
    def series(self) -> list[SeriesSpec]:
        return [x for s in self.studies for x in s.series]
