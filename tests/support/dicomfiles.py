"""Small, valid DICOM Part 10 files with chosen attributes, for precise index tests."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

CT = "1.2.840.10008.5.1.4.1.1.2"
CR = "1.2.840.10008.5.1.4.1.1.1"


def uid(*parts: object) -> str:
    """A deterministic UID from ``parts`` (2.25 form, PS3.5 B.2)."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


def make_file(path: Path, *, patient: str = "P1", study: str = "S1", series: str = "SE1",
              sop: str = "I1", modality: str = "CT", size: int = 8, frames: int = 1,
              collection: str | None = None, **attrs: object) -> Path:
    """Write an instance; ``study``/``series``/``sop`` are seeds for deterministic UIDs
    unless they already look like UIDs. Extra keyword arguments become attributes;
    ``collection`` writes TCIA's CTP private block with that ProjectName (DESIGN.md 10)."""
    def as_uid(value: str, kind: str) -> str:
        return value if value[:1].isdigit() else uid(kind, value)

    ds = Dataset()
    ds.SOPClassUID = CT if modality == "CT" else CR
    ds.SOPInstanceUID = as_uid(sop, "sop")
    ds.StudyInstanceUID = as_uid(study, "study")
    ds.SeriesInstanceUID = as_uid(series, "series")
    ds.PatientID = patient
    ds.PatientName = attrs.pop("PatientName", patient)
    ds.Modality = modality
    ds.StudyDate = attrs.pop("StudyDate", "20200315")
    ds.StudyTime = attrs.pop("StudyTime", "101500")
    ds.InstanceNumber = attrs.pop("InstanceNumber", 1)
    ds.SeriesNumber = attrs.pop("SeriesNumber", 1)
    for key, value in attrs.items():
        setattr(ds, key, value)
    if collection is not None:
        block = ds.private_block(0x0013, "CTP", create=True)
        block.add_new(0x10, "LO", collection)
        block.add_new(0x13, "LO", "1")
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = (np.arange(size * size * frames, dtype=np.uint16) * 7).reshape(frames, size, size)
    ds.PixelData = pixels.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
