"""Small, valid DICOM files built in the test: a patient with a few studies (CR, DX,
CT, compressed and not), for DIMSE tests that must not wait for the synthetic cohort."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid)

SOP = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1",
       "CT": "1.2.840.10008.5.1.4.1.1.2"}


@dataclass
class Written:
    root: Path
    studies: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # study → series → sops
    files: list[Path] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return len(self.files)


def _dataset(modality: str, patient: tuple[str, str], study: str, series: str, number: int,
             size: int, rng: np.random.Generator) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SOP[modality], generate_uid()
    ds.PatientID, ds.PatientName = patient
    ds.PatientBirthDate, ds.PatientSex = "19600101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.StudyTime, ds.SeriesDate = "20200415", "101500", "20200415"
    ds.AccessionNumber, ds.StudyID = study[-8:], "1"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST" if modality == "CT" else "XR CHEST AP PORTABLE"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, number
    ds.BodyPartExamined = "CHEST"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if modality == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.ImagePositionPatient = [0, 0, -number * 5.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], "5"
    ds.PixelData = rng.integers(0, 4095, (size, size), dtype=np.uint16).tobytes()
    return ds


def write_patient(root: Path, *, patient_id: str = "COVID-19-AR-10000001",
                  ct_slices: int = 6, size: int = 64, seed: int = 1) -> Written:
    """One patient: a DX study (uncompressed), a CR study (RLE) with two series,
    a DX study (JPEG 2000 Lossless) and a CT study of ``ct_slices`` slices."""
    rng = np.random.default_rng(seed)
    out = Written(root)
    patient = (patient_id, "TEST^PATIENT")
    plan = [("DX", ExplicitVRLittleEndian, [1]), ("CR", RLELossless, [1, 1]),
            ("DX", JPEG2000Lossless, [1]), ("CT", ExplicitVRLittleEndian, [ct_slices])]
    for modality, syntax, series_sizes in plan:
        study = generate_uid()
        out.studies[study] = {}
        for count in series_sizes:
            series = generate_uid()
            out.studies[study][series] = []
            for n in range(1, count + 1):
                ds = _dataset(modality, patient, study, series, n, size, rng)
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = \
                    ds.SOPClassUID, ds.SOPInstanceUID
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds.file_meta = meta
                if syntax != ExplicitVRLittleEndian:
                    ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless
                                else "pydicom")
                path = root / study / series / f"{ds.SOPInstanceUID}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                out.studies[study][series].append(ds.SOPInstanceUID)
                out.files.append(path)
    return out
