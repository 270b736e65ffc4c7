"""The other modalities of the larger collections, cut from the same study phantom as its CT.

MR Image (PS3.3 A.4: MR Image C.8.3.1), PET Image (A.21: PET Series C.8.9.1, PET Isotope
C.8.9.2, PET Image C.8.9.4), NM Image (A.5: NM Image Pixel C.8.4.7, NM Multi-frame C.8.4.8,
NM Image C.8.4.9, NM Isotope C.8.4.10, NM Detector C.8.4.11; planar STATIC frames), Secondary
Capture (A.8.1: RGB PET/CT fusions and emission MIPs) and X-Ray Radiation Dose SR (A.35.8,
TID 10011 in outline). Emission images show a synthetic uptake: soft tissue, little in lung and
fat, more where the finding's opacities are.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from .ctseries import AXIAL, PLANNERS, SAGITTAL, Plane, Scan
from .dicom import SeriesWriter, Values, base_dataset, code_item, image_basics, write_instance
from .layout import instance_name
from .model import SeriesSpec, make_uid

F18 = ("77004003", "SCT", "^18^Fluorine")
TC99M = ("44588005", "SCT", "^99m^Technetium")  # PS3.16 CID 18 radionuclides


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def mr_signal(hu: np.ndarray) -> np.ndarray:
    """A T2-weighted look from tissue classes: fat and fluid bright, lung and bone dark."""
    return np.interp(hu, [-1000, -700, -200, -90, -30, 20, 60, 150, 400, 900],
                     [5, 30, 60, 900, 700, 350, 420, 250, 120, 60]).astype(np.float32)


def uptake(hu: np.ndarray) -> np.ndarray:
    """Relative FDG uptake: inflamed lung (opacities) takes it up; aerated lung barely."""
    base = np.interp(hu, [-1000, -900, -700, -400, -150, -50, 20, 70, 300, 900],
                     [0.0, 0.3, 0.5, 1.8, 0.4, 0.5, 1.0, 1.6, 0.9, 0.7])
    return base.astype(np.float32)


def _values(series: SeriesSpec, i: int, plane: Plane | None = None, scale: float = 1.0
            ) -> Values:
    """Per-instance identity and, for planes, Image Plane (C.7.6.2)."""
    values: Values = {"SOPInstanceUID": series.instance_uids[i], "InstanceNumber": str(i + 1)}
    if plane is not None:
        values["ImagePositionPatient"] = [f"{v:.2f}" for v in plane.position]
        values["ImageOrientationPatient"] = list(plane.orientation)
        values["PixelSpacing"] = [f"{plane.spacing[0] * scale:.4f}",
                                  f"{plane.spacing[1] * scale:.4f}"]
        if plane.location is not None:
            values["SliceLocation"] = f"{plane.location:.2f}"
    return values


def _frame_of_reference(ds: Dataset, scan: Scan) -> None:
    ds.FrameOfReferenceUID = make_uid(scan.job.seed, scan.job.study.uid, "frame-of-reference")
    ds.PositionReferenceIndicator = ""


def _mono16(ds: Dataset, size: int, signed: bool) -> None:
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0


def _store(values: np.ndarray, signed: bool) -> np.ndarray:
    top = 32767 if signed else 65535
    return np.clip(np.rint(values), 0, top).astype(np.int16 if signed else np.uint16)


def render_mr(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """MR Image: the study's anatomy as T2-like signal, axial, coronal or sagittal."""
    size, n = max(64, scan.size // 2), len(series.instance_uids)
    planner = PLANNERS[series.kind.removeprefix("mr-")]
    ds = base_dataset(scan.job, series, 0)
    image_basics(ds)
    _frame_of_reference(ds, scan)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    _mono16(ds, size, series.pixel_rep == 1)
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "SK", ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "1200", "90", 128
    ds.MagneticFieldStrength, ds.ImagedNucleus = "1.5", "1H"
    ds.SliceThickness = f"{series.thickness or 5.0:.2f}"
    ds.WindowCenter, ds.WindowWidth = "450", "900"
    writer = SeriesWriter(ds, series.syntax)
    for i, plane in enumerate(planner(scan, series, n)):
        writer.write(target / instance_name(i, n), _values(series, i, plane, scan.size / size),
                     _store(_resize(mr_signal(plane.hu), size), series.pixel_rep == 1))
    return writer.bytes


def _radiopharmaceutical(ds: Dataset, nuclide: tuple[str, str, str], agent: str,
                         half_life: str) -> None:
    item = Dataset()
    item.RadionuclideCodeSequence = [code_item(*nuclide)]
    item.Radiopharmaceutical = agent
    item.RadiopharmaceuticalStartTime = ds.StudyTime
    item.RadionuclideTotalDose = "370000000"
    if half_life:  # PET Isotope only (C.8.9.2)
        item.RadionuclideHalfLife = half_life
    ds.RadiopharmaceuticalInformationSequence = [item]
    ds.PatientOrientationCodeSequence = []
    ds.PatientGantryRelationshipCodeSequence = []


def render_pet(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """PET Image: axial uptake slices over the study's length (Bq/ml, decay corrected)."""
    size, n = max(64, scan.size // 4), len(series.instance_uids)
    ds = base_dataset(scan.job, series, 0)
    image_basics(ds)
    _frame_of_reference(ds, scan)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    _mono16(ds, size, series.pixel_rep == 1)
    ds.Units, ds.CountsSource, ds.SeriesType = "BQML", "EMISSION", ["WHOLE BODY", "IMAGE"]
    ds.CorrectedImage = ["DECY", "ATTN"] if "NAC" not in (series.description or "").upper() \
        else ["DECY"]
    ds.DecayCorrection, ds.NumberOfSlices, ds.CollimatorType = "START", n, "NONE"
    ds.RescaleIntercept, ds.RescaleSlope = "0", "2"
    ds.FrameReferenceTime, ds.ActualFrameDuration, ds.DecayFactor = "0", 180000, "1"
    ds.SliceThickness = f"{series.thickness or 3.0:.2f}"
    _radiopharmaceutical(ds, F18, "Fludeoxyglucose F^18^", "6586.2")
    flat = replace(series, kind="axial", coverage=None)
    writer = SeriesWriter(ds, series.syntax)
    for i, plane in enumerate(PLANNERS["axial"](scan, flat, n)):
        values = _values(series, i, plane, scan.size / size)
        values["ImageIndex"] = str(i + 1)
        writer.write(target / instance_name(i, n), values,
                     _store(_resize(uptake(plane.hu), size) * 2500.0, series.pixel_rep == 1))
    return writer.bytes


def _planar(scan: Scan, size: int, lateral: bool = False) -> np.ndarray:
    """Anterior (or lateral) projection of the uptake volume, counts per pixel."""
    counts = uptake(scan.volume).sum(axis=2 if lateral else 1)
    return _resize(counts, size) * 40.0


def render_nm(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """NM Image: one planar STATIC anterior frame per instance (Tc-99m)."""
    size, n = max(64, scan.size // 4), len(series.instance_uids)
    ds = base_dataset(scan.job, series, 0)
    image_basics(ds)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    _mono16(ds, size, False)
    ds.PixelSpacing = [f"{4.8 * 64 / size:.4f}"] * 2
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = [0x00540010, 0x00540020]  # Energy Window, Detector Vector
    ds.EnergyWindowVector, ds.NumberOfEnergyWindows = [1], 1
    ds.DetectorVector, ds.NumberOfDetectors = [1], 1
    window = Dataset()
    limits = Dataset()
    limits.EnergyWindowLowerLimit, limits.EnergyWindowUpperLimit = "126", "154"
    window.EnergyWindowRangeSequence = [limits]
    ds.EnergyWindowInformationSequence = [window]
    detector = Dataset()
    detector.CollimatorGridName, detector.CollimatorType = "LEHR", "PARA"
    detector.ImagePositionPatient = ""  # type 2: unknown
    detector.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    ds.DetectorInformationSequence = [detector]
    ds.CountsAccumulated, ds.ActualFrameDuration = 500000, 300000
    _radiopharmaceutical(ds, TC99M, "Tc-99m MAA", "")
    image = _store(_planar(scan, size), False)
    writer = SeriesWriter(ds, series.syntax)
    for i in range(n):
        writer.write(target / instance_name(i, n), _values(series, i), image)
    return writer.bytes


def _sc_header(scan: Scan, series: SeriesSpec) -> Dataset:
    ds = base_dataset(scan.job, series, 0)
    image_basics(ds)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "WSD"
    return ds


def _fusion(scan: Scan, series: SeriesSpec, plane: Plane) -> np.ndarray:
    """CT in grey (soft-tissue window) under a hot-iron colour map of the uptake."""
    grey = np.clip((plane.hu + 160.0) / 400.0, 0.0, 1.0)
    hot = np.clip(uptake(plane.hu) / 2.0, 0.0, 1.0) * 0.6
    rgb = np.stack([grey * (1 - hot) + hot * np.clip(3 * hot, 0, 1),
                    grey * (1 - hot) + hot * np.clip(3 * hot - 1, 0, 1),
                    grey * (1 - hot) + hot * np.clip(3 * hot - 2, 0, 1)], axis=-1)
    return np.rint(rgb * 255.0).astype(np.uint8)


def render_fused(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """Secondary Capture RGB: PET/CT fusion on axial, coronal or sagittal planes."""
    d = (series.description or "").upper()
    kind = "sagittal" if "SAG" in d else "coronal" if "COR" in d else "axial"
    if "MIP" in d and kind == "axial":
        kind = "coronal"
    n = len(series.instance_uids)
    ds = _sc_header(scan, series)
    ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration = "RGB", 3, 0
    ds.Rows = ds.Columns = scan.size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    writer = SeriesWriter(ds, series.syntax)
    for i, plane in enumerate(PLANNERS[kind](scan, replace(series, kind=kind), n)):
        values = _values(series, i)
        values["PatientOrientation"] = ["P", "F"] if plane.orientation == SAGITTAL else \
            ["L", "P"] if plane.orientation == AXIAL else ["L", "F"]
        writer.write(target / instance_name(i, n), values, _fusion(scan, series, plane))
    return writer.bytes


def render_emission_mip(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """Secondary Capture greyscale: rotating MIP views of the uptake (as workstations save)."""
    size, n = max(64, scan.size // 4), len(series.instance_uids)
    ds = _sc_header(scan, series)
    _mono16(ds, size, False)
    ds.PatientOrientation = ["L", "F"]
    up = uptake(scan.volume)
    front, side = _resize(up.max(axis=1), size), _resize(up.max(axis=2), size)
    writer = SeriesWriter(ds, series.syntax)
    for i in range(n):
        angle = 2 * np.pi * i / max(n, 1)
        view = np.maximum(abs(np.cos(angle)) * front, abs(np.sin(angle)) * side)
        writer.write(target / instance_name(i, n), _values(series, i),
                     _store(view * 1000.0, False))
    return writer.bytes


def _content(relationship: str, value_type: str, concept: tuple[str, str, str],
             **value: Any) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = relationship, value_type
    item.ConceptNameCodeSequence = [code_item(*concept)]
    for keyword, v in value.items():
        setattr(item, keyword, v)
    return item


def _measured(number: str, units: tuple[str, str, str]) -> list[Dataset]:
    item = Dataset()
    item.NumericValue = number
    item.MeasurementUnitsCodeSequence = [code_item(*units)]
    return [item]


def render_dose_sr(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """X-Ray Radiation Dose SR: the study's CT accumulated dose (TID 10011, main items)."""
    ds = base_dataset(scan.job, series, 0)
    del ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.DeviceSerialNumber, ds.SoftwareVersions = "SYNTH-0001", "tcia-gateway"
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [code_item("113701", "DCM", "X-Ray Radiation Dose Report")]
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "10011"
    ds.ContentTemplateSequence = [template]
    scope = _content("HAS OBS CONTEXT", "CODE", ("113705", "DCM", "Scope of Accumulation"),
                     ConceptCodeSequence=[code_item("113014", "DCM", "Study")])
    scope.ContentSequence = [_content("HAS PROPERTIES", "UIDREF",
                                      ("110180", "DCM", "Study Instance UID"),
                                      UID=scan.job.study.uid)]
    accumulated = _content("CONTAINS", "CONTAINER", ("113811", "DCM", "CT Accumulated Dose Data"),
                           ContinuityOfContent="SEPARATE")
    accumulated.ContentSequence = [
        _content("CONTAINS", "NUM", ("113812", "DCM", "Total Number of Irradiation Events"),
                 MeasuredValueSequence=_measured("3", ("{events}", "UCUM", "events"))),
        _content("CONTAINS", "NUM", ("113813", "DCM", "CT Dose Length Product Total"),
                 MeasuredValueSequence=_measured("412.5", ("mGy.cm", "UCUM", "mGy.cm")))]
    ds.ContentSequence = [
        _content("HAS CONCEPT MOD", "CODE", ("121058", "DCM", "Procedure reported"),
                 ConceptCodeSequence=[code_item("77477000", "SCT",
                                                "Computed Tomography X-Ray")]),
        scope, accumulated,
        _content("CONTAINS", "CODE", ("113854", "DCM", "Source of Dose Information"),
                 ConceptCodeSequence=[code_item("113856", "DCM",
                                                "Automated Data Collection")])]
    total = 0
    for i in range(len(series.instance_uids)):
        ds.SOPInstanceUID, ds.InstanceNumber = series.instance_uids[i], i + 1
        total += write_instance(ds, target / instance_name(i, len(series.instance_uids)),
                                series.syntax)
    return total


RENDERERS = {"mr-axial": render_mr, "mr-coronal": render_mr, "mr-sagittal": render_mr,
             "pet": render_pet, "nm": render_nm, "fused": render_fused,
             "pet-mip": render_emission_mip, "sr": render_dose_sr}
