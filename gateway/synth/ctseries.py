"""CT series of one acquisition: axial stacks, MPR and MIP planes, scouts, bolus tracking.

Every series of a study cuts the same phantom (one Frame of Reference, PS3.3 C.7.4.1): axial
series sample it at full matrix, thin and thick reconstructions over the same length; coronal
and sagittal MPRs, slab MIPs and the projection scouts are cut from one coarse volume of it, so
a viewer's reference lines and the anatomy agree across series. CT Image (PS3.3 A.3) carries
Image Plane (C.7.6.2) and CT Image (C.8.2.1); MIPs stored as Secondary Capture (A.8.1) carry SC
Equipment (C.8.6.1), Modality LUT (C.11.1) and VOI LUT (C.11.2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from . import tables as T
from .ct import CHEST_MM, ChestPhantom
from .dicom import SeriesWriter, StudyJob, Values, base_dataset, image_basics
from .images import Habitus
from .layout import instance_name
from .model import SC_IMAGE, SeriesSpec, make_uid

FOV_MM = 358.4  # reconstruction diameter: 512 px of 0.7 mm
VOLUME_XY, VOLUME_Z = 256, 160  # the coarse volume MPRs are cut from (at most)
AXIAL, CORONAL, SAGITTAL = ("1", "0", "0", "0", "1", "0"), ("1", "0", "0", "0", "0", "-1"), \
    ("0", "1", "0", "0", "0", "-1")
MONITOR_DEPTH = 0.42 * CHEST_MM  # bolus tracking level: the pulmonary trunk


@dataclass(frozen=True)
class Plane:
    """One image of a series: where it lies and its Hounsfield units."""

    hu: np.ndarray
    position: tuple[float, float, float]
    orientation: tuple[str, ...]
    spacing: tuple[float, float]  # row spacing, column spacing (mm)
    location: float | None  # SliceLocation for axial planes


class Scan:
    """One study's acquisition: the phantom at full matrix and, when needed, a coarse volume."""

    def __init__(self, job: StudyJob) -> None:
        self.job, self.size, self.span = job, job.ct_size, job.study.span_mm
        self.top = T.CT_TOP_Z_MM
        self._full: ChestPhantom | None = None
        self._volume: np.ndarray | None = None

    def phantom(self, size: int) -> ChestPhantom:
        p, s = self.job.patient, self.job.study
        rng = np.random.default_rng([self.job.seed, 2, p.index, s.ordinal, 1])  # one anatomy
        return ChestPhantom(size, FOV_MM / size, s.finding, Habitus.of(p.bmi, p.sex), rng)

    @property
    def full(self) -> ChestPhantom:
        if self._full is None:
            self._full = self.phantom(self.size)
        return self._full

    @property
    def volume(self) -> np.ndarray:
        """HU on a (z, y, x) grid over the whole scan length, apex first."""
        if self._volume is None:
            n, nz = min(self.size, VOLUME_XY), min(self.size, VOLUME_Z)
            coarse = self.phantom(n)
            self._volume = np.stack([coarse.hu_at((k + 0.5) * self.span / nz) for k in range(nz)])
        return self._volume

    def index(self, mm: float) -> int:
        """Volume column (x) or row (y) nearest to ``mm``."""
        n = self._volume.shape[2] if self._volume is not None else self.volume.shape[2]
        return int(np.clip(np.rint(mm / (FOV_MM / n) + (n - 1) / 2), 0, n - 1))

    def resized(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(image.astype(np.float32)).resize(
            (self.size, self.size), Image.Resampling.BILINEAR), dtype=np.float32)


def _axial(scan: Scan, series: SeriesSpec, n: int) -> Iterator[Plane]:
    extent = min(series.coverage or scan.span, scan.span)
    step = extent / n
    half = (scan.size - 1) / 2 * (FOV_MM / scan.size)
    for i in range(n):
        depth = scan.span - extent + (i + 0.5) * step
        z = round(scan.top - depth, 2)
        yield Plane(scan.full.hu_at(depth), (-half, -half, z), AXIAL,
                    (FOV_MM / scan.size,) * 2, z)


def _monitor(scan: Scan, series: SeriesSpec, n: int) -> Iterator[Plane]:
    half = (scan.size - 1) / 2 * (FOV_MM / scan.size)
    z = round(scan.top - MONITOR_DEPTH, 2)
    for i in range(n):
        yield Plane(scan.full.hu_at(MONITOR_DEPTH, noise_key=i), (-half, -half, z), AXIAL,
                    (FOV_MM / scan.size,) * 2, z)


def _reformat(scan: Scan, series: SeriesSpec, n: int) -> Iterator[Plane]:
    """Coronal (fixed y) or sagittal (fixed x) planes, MPR or slab MIP, through the volume."""
    sagittal = series.kind.endswith("sagittal")
    lo, hi = (-170.0, 170.0) if sagittal else (-120.0, 130.0)
    slab = (series.thickness or 10.0) if series.kind.startswith("mip") else 0.0
    vol, half = scan.volume, (scan.size - 1) / 2 * (FOV_MM / scan.size)
    row_mm = scan.span / scan.size
    for i in range(n):
        at = lo + (i + 0.5) * (hi - lo) / n
        first, last = scan.index(at - slab / 2), scan.index(at + slab / 2)
        cut = vol[:, :, first:last + 1].max(axis=2) if sagittal else \
            vol[:, first:last + 1, :].max(axis=1)
        origin = (round(at, 2), -half, scan.top - row_mm / 2) if sagittal else \
            (-half, round(at, 2), scan.top - row_mm / 2)
        yield Plane(scan.resized(cut), origin, SAGITTAL if sagittal else CORONAL,
                    (row_mm, FOV_MM / scan.size), None)


def _projection(scan: Scan, series: SeriesSpec, n: int) -> Iterator[Plane]:
    """Scouts and locators: line integrals through the volume, AP and lateral in turn."""
    vol = scan.volume
    mu = np.clip((vol + 1000.0) / 1000.0, 0.0, None) * (FOV_MM / vol.shape[2])
    row_mm, half = scan.span / scan.size, (scan.size - 1) / 2 * (FOV_MM / scan.size)
    views = [scan.resized(mu.sum(axis=axis) * 8.0 - 1024.0) for axis in (1, 2)]  # AP, lateral
    for i in range(n):
        lateral = i % 2 == 1
        origin = (0.0, -half, scan.top - row_mm / 2) if lateral else \
            (-half, 0.0, scan.top - row_mm / 2)
        yield Plane(views[lateral], origin, SAGITTAL if lateral else CORONAL,
                    (row_mm, FOV_MM / scan.size), None)


PLANNERS = {"axial": _axial, "monitor": _monitor, "coronal": _reformat, "sagittal": _reformat,
            "mip-coronal": _reformat, "mip-sagittal": _reformat, "projection": _projection}


def _image_type(series: SeriesSpec) -> list[str]:
    if series.kind == "projection":
        return ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    if series.kind in ("axial", "monitor"):
        return ["ORIGINAL", "PRIMARY", "AXIAL"]
    return ["DERIVED", "SECONDARY", "MIP" if series.kind.startswith("mip") else "REFORMATTED"]


def _pixel_module(ds: Dataset, series: SeriesSpec, size: int) -> None:
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    signed = series.pixel_rep == 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16 if signed else 12, 15 if signed else 11
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    if series.kind != "projection":  # a localizer's values are no Hounsfield units
        ds.RescaleType = "HU"
    if series.kind == "projection":
        ds.WindowCenter, ds.WindowWidth = "1200", "2400"
    else:
        ds.WindowCenter, ds.WindowWidth = ["-600", "40"], ["1500", "400"]
        ds.WindowCenterWidthExplanation = ["LUNG", "MEDIASTINUM"]


def _header(job: StudyJob, series: SeriesSpec) -> Dataset:
    """The header shared by every image of a series; ``_values`` gives the per-image part."""
    ds = base_dataset(job, series, 0)
    image_basics(ds)
    ds.ImageType = _image_type(series)
    _pixel_module(ds, series, job.ct_size)
    if series.sop_class == SC_IMAGE:
        ds.ConversionType = "WSD"  # SC Equipment: workstation
        return ds
    ds.FrameOfReferenceUID = make_uid(job.seed, job.study.uid, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.SliceThickness = f"{series.thickness or 1.0:.2f}"
    ds.KVP, ds.AcquisitionNumber = "120", 1
    ds.ReconstructionDiameter = f"{FOV_MM:.1f}"
    sharp = any(w in (series.description or "").upper() for w in ("LUNG", "BONE", "DETAIL", "HR"))
    ds.ConvolutionKernel = "B70f" if sharp else "B31f"
    ds.GantryDetectorTilt, ds.XRayTubeCurrent, ds.ExposureTime = "0", 180, 500
    return ds


def _values(series: SeriesSpec, index: int, plane: Plane) -> Values:
    """The per-image attributes: identity, then Image Plane (or, for SC, orientation only)."""
    spacing = [f"{plane.spacing[0]:.4f}", f"{plane.spacing[1]:.4f}"]
    values: Values = {"SOPInstanceUID": series.instance_uids[index],
                      "InstanceNumber": str(index + 1)}
    if series.sop_class == SC_IMAGE:
        values["PatientOrientation"] = ["P", "F"] if plane.orientation == SAGITTAL else \
            ["L", "F"]
        values["NominalScannedPixelSpacing"] = spacing
        return values
    values["ImagePositionPatient"] = [f"{v:.2f}" for v in plane.position]
    values["ImageOrientationPatient"] = list(plane.orientation)
    values["PixelSpacing"] = spacing
    if plane.location is not None:
        values["SliceLocation"] = f"{plane.location:.2f}"
    return values


def stored(hu: np.ndarray, signed: bool) -> np.ndarray:
    """Stored values for RescaleIntercept -1024, slope 1."""
    return np.clip(np.rint(hu) + 1024.0, 0, 4095).astype(np.int16 if signed else np.uint16)


def render_ct_series(scan: Scan, series: SeriesSpec, target: Path) -> int:
    """Write one CT (or CT-derived Secondary Capture) series; returns the bytes written."""
    n = len(series.instance_uids)
    writer = SeriesWriter(_header(scan.job, series), series.syntax)
    for i, plane in enumerate(PLANNERS[series.kind](scan, series, n)):
        writer.write(target / instance_name(i, n), _values(series, i, plane),
                     stored(plane.hu, series.pixel_rep == 1))
    return writer.bytes
