"""IOD construction and the NBIA download layout for the synthetic cohort.

Builds CR Image (PS3.3 A.2), Digital X-Ray Image For Presentation (PS3.3 A.26) and CT Image
(PS3.3 A.3) instances with TCIA-style de-identification attributes (PS3.15 Annex E, coded per
PS3.16 CID 7050), encodes compressed radiographs (RLE Lossless PS3.5 G, JPEG 2000 Lossless PS3.5
A.4.4) and writes each study under ``COVID-19-AR/<PatientID>/<date>-<study>-<n>/<series>/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.encoders import JPEG2000LosslessEncoder, RLELosslessEncoder
from pydicom.uid import UID

from . import tables as T
from .cohort import (
    EXPLICIT_VR_LE,
    RLE_LOSSLESS,
    PatientSpec,
    SeriesSpec,
    StudySpec,
    ct_spacing,
    make_uid,
)
from .ct import CT_SIZE, ChestCT
from .images import Habitus, radiograph, xr_window

# The project's implementation class UID (PS3.7 D.3.3.2), 2.25 form of a fixed name-based UUID.
IMPLEMENTATION_CLASS_UID = "2.25.90036964747672796879490749440906121877"
IMPLEMENTATION_VERSION_NAME = "TCIAGW_SYNTH"
SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
}
COLLECTION = "COVID-19-AR"
CHEST_CODE = ("43799004", "SCT", "Chest")  # PS3.16 CID 4031, body part CHEST
XR_BITS = 12
# RLE encoder: GDCM (~15 ms per 1024 px radiograph) when installed, else pydicom's pure-Python
# one (~0.5 s). Both are deterministic; the bytes differ between them, so one machine's output is
# reproducible as long as the installed encoders do not change.
RLE_PLUGIN = "gdcm" if "gdcm" in RLELosslessEncoder.available_plugins else "pydicom"
XR_DETECTOR_MM = 430.0  # 17-inch detector along the rows


@dataclass(frozen=True)
class StudyJob:
    """One study to render: everything a worker process needs, picklable."""

    root: Path
    seed: int
    ct_slices: int
    xr_size: int
    patient: PatientSpec  # without its studies
    study: StudySpec


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def file_meta(sop_class: str, sop_instance: str, syntax: str) -> FileMetaDataset:
    """File Meta Information (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _patient_modules(ds: Dataset, p: PatientSpec) -> None:
    """Patient (C.7.1.1) with de-identification, Clinical Trial Subject (C.7.1.3)."""
    ds.PatientName = p.patient_id  # TCIA: PatientName = PatientID
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = ""  # type 2: removed by the Basic Profile
    ds.PatientSex = p.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = T.DEID_METHOD
    ds.DeidentificationMethodCodeSequence = [_code(v, "DCM", m) for v, m in T.DEID_CODES]
    ds.ClinicalTrialSponsorName = "tcia-gateway synthetic cohort"
    ds.ClinicalTrialProtocolID = COLLECTION
    ds.ClinicalTrialProtocolName = "COVID-19-AR synthetic twin"
    ds.ClinicalTrialSiteID = ""
    ds.ClinicalTrialSiteName = ""
    ds.ClinicalTrialSubjectID = p.patient_id


def _study_series_modules(ds: Dataset, p: PatientSpec, s: StudySpec, series: SeriesSpec) -> None:
    """General Study (C.7.2.1), Patient Study (C.7.2.2), General Series (C.7.3.1), General
    Equipment (C.7.5.1)."""
    ds.StudyInstanceUID = s.uid
    ds.StudyDate, ds.StudyTime = f"{s.when:%Y%m%d}", f"{s.when:%H%M%S}"
    ds.ReferringPhysicianName = ""
    ds.StudyID = str(s.ordinal + 1)
    ds.AccessionNumber = s.accession
    ds.StudyDescription = s.description
    ds.PatientAge = f"{min(p.age, 999):03d}Y"
    if p.height_in:
        ds.PatientSize = f"{p.height_in * 0.0254:.2f}"
    if p.weight_lb:
        ds.PatientWeight = f"{p.weight_lb * 0.45359237:.1f}"
    ds.Modality = s.modality
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
    ds.SeriesDescription = series.description
    ds.BodyPartExamined = "CHEST"
    maker, model = T.CT_EQUIPMENT if s.modality == "CT" else T.XR_EQUIPMENT[s.modality]
    ds.Manufacturer, ds.ManufacturerModelName = maker, model
    ds.InstitutionName = ""


def _base(p: PatientSpec, s: StudySpec, series: SeriesSpec, index: int) -> Dataset:
    """Modules shared by the three IODs, plus SOP Common (C.12.1) and General Image (C.7.6.1)."""
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASSES[s.modality]
    ds.SOPInstanceUID = series.instance_uids[index]
    ds.InstanceCreationDate, ds.InstanceCreationTime = f"{s.when:%Y%m%d}", f"{s.when:%H%M%S}"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    _patient_modules(ds, p)
    _study_series_modules(ds, p, s, series)
    ds.InstanceNumber = index + 1
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.AcquisitionDate, ds.AcquisitionTime = ds.StudyDate, ds.StudyTime
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    return ds


def _radiograph_modules(ds: Dataset, s: StudySpec, view: str, rows: int, cols: int,
                        window: tuple[int, int]) -> None:
    """CR Series/Image (C.8.1) or DX Series/Anatomy/Image/Detector/Positioning (C.8.11)."""
    spacing = f"{XR_DETECTOR_MM / rows:.4f}"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["P", "F"] if view == "LL" else ["L", "F"]
    ds.ViewPosition = view
    ds.PhotometricInterpretation = "MONOCHROME1" if s.monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, XR_BITS, 11, 0
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.KVP = "110" if view == "LL" else "90"
    ds.DistanceSourceToDetector = "1000" if s.description.endswith("PORTABLE") else "1800"
    ds.ExposureTime, ds.XRayTubeCurrent = 20, 250
    ds.WindowCenter, ds.WindowWidth = window
    if s.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
        ds.AnatomicRegionSequence = [_code(*CHEST_CODE)]
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
        ds.PresentationLUTShape = "INVERSE" if s.monochrome1 else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacing = [spacing, spacing]
        ds.ViewCodeSequence = [_code(*T.VIEW_CODES[view])]
        ds.AcquisitionContextSequence = []
        ds.PositionerType = "NONE" if s.description.endswith("PORTABLE") else "COLUMN"


def _set_pixels(ds: Dataset, pixels: np.ndarray, syntax: str) -> None:
    """Native pixel data, or one encapsulated fragment per frame with an empty-offset BOT."""
    if syntax == EXPLICIT_VR_LE:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        return
    encoder = RLELosslessEncoder if syntax == RLE_LOSSLESS else JPEG2000LosslessEncoder
    plugin = RLE_PLUGIN if syntax == RLE_LOSSLESS else "pylibjpeg"
    frame = encoder.encode(pixels, encoding_plugin=plugin, rows=ds.Rows, columns=ds.Columns,
                           samples_per_pixel=1, bits_allocated=ds.BitsAllocated,
                           bits_stored=ds.BitsStored, pixel_representation=ds.PixelRepresentation,
                           photometric_interpretation=ds.PhotometricInterpretation,
                           number_of_frames=1)
    ds.PixelData = encapsulate([frame], has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def radiograph_dataset(job: StudyJob, series: SeriesSpec, rng: np.random.Generator) -> Dataset:
    """One CR or DX instance with its pixels (MONOCHROME1 stored inverted)."""
    p, s, view = job.patient, job.study, series.views[0]
    rows, cols = job.xr_size, round(0.85 * job.xr_size)
    pixels = radiograph(view, rows, cols, s.finding, Habitus.of(p.bmi, p.sex), p.sex, rng, XR_BITS)
    centre, width = xr_window(pixels)
    if s.monochrome1:  # stored inverted: high values are dark
        pixels = ((1 << XR_BITS) - 1 - pixels).astype(np.uint16)
        centre = (1 << XR_BITS) - 1 - centre
    ds = _base(p, s, series, 0)
    _radiograph_modules(ds, s, view, rows, cols, (centre, width))
    _set_pixels(ds, pixels, s.transfer_syntax)
    return ds


def ct_geometry(slices: int) -> tuple[float, list[float]]:
    """Slice spacing (= SliceThickness) and the z of each slice, apex first (LPS, +z head)."""
    spacing = ct_spacing(slices)
    return spacing, [round(T.CT_TOP_Z_MM - i * spacing, 2) for i in range(slices)]


def ct_dataset(job: StudyJob, series: SeriesSpec, spacing: float) -> Dataset:
    """The CT header shared by every slice of a series: Frame of Reference (C.7.4.1), Image
    Plane (C.7.6.2), CT Image (C.8.2.1). ``set_ct_slice`` fills in the per-slice attributes."""
    ds = _base(job.patient, job.study, series, 0)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = make_uid(job.seed, job.study.uid, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.SliceThickness = f"{spacing:.2f}"
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = "0"
    ds.PixelSpacing = [f"{T.CT_PIXEL_SPACING_MM}", f"{T.CT_PIXEL_SPACING_MM}"]
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = CT_SIZE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.KVP, ds.AcquisitionNumber = "120", 1
    ds.ReconstructionDiameter = f"{CT_SIZE * T.CT_PIXEL_SPACING_MM:.1f}"
    ds.ConvolutionKernel = "B70f" if "HIGH RESOLUTION" in job.study.description else "B31f"
    ds.GantryDetectorTilt, ds.XRayTubeCurrent, ds.ExposureTime = "0", 180, 500
    ds.WindowCenter, ds.WindowWidth = ["-600", "40"], ["1500", "400"]
    ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]
    return ds


def set_ct_slice(ds: Dataset, series: SeriesSpec, index: int, z: float, pixels: np.ndarray
                 ) -> None:
    """Per-slice attributes: the header is reused so a 120-slice series is built once."""
    half = (CT_SIZE - 1) / 2 * T.CT_PIXEL_SPACING_MM
    ds.SOPInstanceUID = series.instance_uids[index]
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [f"{-half:.2f}", f"{-half:.2f}", f"{z:.2f}"]
    ds.SliceLocation = f"{z:.2f}"
    _set_pixels(ds, pixels, EXPLICIT_VR_LE)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9 ._()+-]", "_", text).strip()


def study_dir(root: Path, p: PatientSpec, s: StudySpec) -> Path:
    """NBIA layout: ``<root>/COVID-19-AR/<PatientID>/<MM-DD-YYYY>-<description>-<n>``, n being
    the last 5 digits of the StudyInstanceUID."""
    name = f"{s.when:%m-%d-%Y}-{_safe(s.description)}-{s.uid[-5:]}"
    return root / COLLECTION / p.patient_id / name


def series_dir(study: Path, series: SeriesSpec) -> Path:
    return study / f"{series.number}.000000-{_safe(series.description)}-{series.uid[-5:]}"


def instance_name(index: int, count: int) -> str:
    """``1-001.dcm`` …: NBIA's acquisition-instance naming, zero padded to at least 3 digits."""
    return f"1-{index + 1:0{max(3, len(str(count)))}d}.dcm"


def render_study(job: StudyJob) -> tuple[int, int]:
    """Render and write one study; returns (instances, bytes). Runs in worker processes."""
    p, s = job.patient, job.study
    rng = np.random.default_rng([job.seed, 2, p.index, s.ordinal])
    folder = study_dir(job.root, p, s)
    count = size = 0
    for series in s.series:
        target = series_dir(folder, series)
        target.mkdir(parents=True, exist_ok=True)
        n = len(series.instance_uids)
        if s.modality == "CT":
            spacing, zs = ct_geometry(n)
            phantom = ChestCT(n, spacing, T.CT_PIXEL_SPACING_MM, s.finding,
                              Habitus.of(p.bmi, p.sex), rng)
            ds = ct_dataset(job, series, spacing)
            for i, z in enumerate(zs):
                set_ct_slice(ds, series, i, z, phantom.stored(i))
                size += write_instance(ds, target / instance_name(i, n), EXPLICIT_VR_LE)
        else:
            ds = radiograph_dataset(job, series, rng)
            size += write_instance(ds, target / instance_name(0, n), s.transfer_syntax)
        count += n
    return count, size


def write_instance(ds: Dataset, path: Path, syntax: str) -> int:
    """Write a Part 10 file (preamble, meta, dataset) and return its size in bytes."""
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax)
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def job_for(root: Path, seed: int, ct_slices: int, xr_size: int, p: PatientSpec, s: StudySpec
            ) -> StudyJob:
    return StudyJob(root, seed, ct_slices, xr_size, replace(p, studies=()), s)

