"""Radiograph instances: CR Image (PS3.3 A.2) and Digital X-Ray For Presentation (A.26)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from . import tables as T
from .dicom import CHEST_CODE, StudyJob, base_dataset, code_item, image_basics, set_pixels
from .images import Habitus, radiograph, xr_window
from .model import SeriesSpec

XR_BITS = 12
XR_DETECTOR_MM = 430.0  # 17-inch detector along the rows


def view_of(description: str | None) -> str:
    """AP, PA or LL (left lateral) from a series or study description."""
    text = (description or "").upper()
    if "LAT" in text:
        return "LL"
    return "PA" if "PA" in text.split() or text.startswith("PA") else "AP"


def _portable(job: StudyJob) -> bool:
    return "PORT" in (job.study.description or "").upper()


def _radiograph_modules(ds: Dataset, job: StudyJob, series: SeriesSpec, view: str, rows: int,
                        cols: int, window: tuple[int, int]) -> None:
    """CR Series/Image (C.8.1) or DX Series/Anatomy/Image/Detector/Positioning (C.8.11)."""
    spacing = f"{XR_DETECTOR_MM / rows:.4f}"
    mono1 = series.photometric == "MONOCHROME1"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["P", "F"] if view == "LL" else ["L", "F"]
    ds.ViewPosition = view
    ds.PhotometricInterpretation = series.photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, XR_BITS, 11, 0
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.KVP = "110" if view == "LL" else "90"
    ds.DistanceSourceToDetector = "1000" if _portable(job) else "1800"
    ds.ExposureTime, ds.XRayTubeCurrent = 20, 250
    ds.WindowCenter, ds.WindowWidth = window
    if series.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
        ds.AnatomicRegionSequence = [code_item(*CHEST_CODE)]
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
        ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacing = [spacing, spacing]
        ds.ViewCodeSequence = [code_item(*T.VIEW_CODES[view])]
        ds.AcquisitionContextSequence = []
        ds.PositionerType = "NONE" if _portable(job) else "COLUMN"


def radiograph_dataset(job: StudyJob, series: SeriesSpec, index: int,
                       rng: np.random.Generator) -> Dataset:
    """One CR or DX instance with its pixels (MONOCHROME1 stored inverted)."""
    p, s, view = job.patient, job.study, series.views[index % len(series.views)]
    rows, cols = job.xr_size, round(0.85 * job.xr_size)
    pixels = radiograph(view, rows, cols, s.finding, Habitus.of(p.bmi, p.sex), p.sex, rng, XR_BITS)
    centre, width = xr_window(pixels)
    if series.photometric == "MONOCHROME1":  # stored inverted: high values are dark
        pixels = ((1 << XR_BITS) - 1 - pixels).astype(np.uint16)
        centre = (1 << XR_BITS) - 1 - centre
    ds = base_dataset(job, series, index)
    image_basics(ds)
    _radiograph_modules(ds, job, series, view, rows, cols, (centre, width))
    set_pixels(ds, pixels, series.syntax)
    return ds
