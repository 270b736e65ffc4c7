"""Write the DICOM seed files of the ``dicomjson`` and ``identifiers`` corpora.

Run ``python -m tests.fuzz.make_corpus`` to regenerate them (deterministic; the files are
committed, small, and each exercises one part of the readers: both VRs, sequences of
defined and undefined length, person names with three groups, character sets, every
binary VR, inline and bulk binary values, native and encapsulated multi-frame pixel data).
"""
from __future__ import annotations

import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit,
                         RLELossless)

HERE = Path(__file__).resolve().parent / "corpus"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _base(n: int, *, size: int = 4, frames: int = 1) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1.{n}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.2", "1.2.826.0.1.3680043.10.3"
    ds.PatientID, ds.PatientName, ds.Modality = f"FUZZ-{n}", "Doe^Jane", "CT"
    ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20200315", "101500.25", 2, n
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = (np.arange(size * size * frames, dtype=np.uint16) * 13).tobytes()
    return ds


def _rich(ds: Dataset) -> Dataset:
    """Every value decoder: multi-values, numbers, AT, PN groups, text VRs, binary VRs."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.ReferringPhysicianName = ["A^B", "C^D"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing, ds.WindowCenter, ds.WindowWidth = [0.5, 0.5], "40", "400\\1500"
    ds.StudyDescription, ds.InstitutionName = "Thorax ", "Ünïversity"
    ds.ImageComments = "line one\\ with backslash"
    ds.AcquisitionDateTime, ds.PatientAge, ds.RetrieveAETitle = "20200315101500.1+0100", "045Y", " AE1 "
    ds.add_new(0x00209165, "AT", [0x00100010, 0x0020000D])       # DimensionIndexPointer
    ds.add_new(0x00189089, "FD", [1.0, -2.5, 3e10])               # DiffusionGradientOrientation
    ds.add_new(0x00186060, "FL", [0.25])                           # RWaveTimeVector
    ds.add_new(0x00280106, "US", 0)                                # SmallestImagePixelValue
    ds.add_new(0x00189219, "SS", -3)                               # TagAngleSecondAxis
    ds.add_new(0x00181063, "DS", "33.3")                           # FrameTime
    ds.add_new(0x00080201, "SH", "+0100")                          # TimezoneOffsetFromUTC
    ds.add_new(0x00400275, "SQ", Sequence([Dataset(), Dataset()])) # RequestAttributesSequence
    ds.RequestAttributesSequence[0].RequestedProcedureID = "RP1"
    ds.RequestAttributesSequence[1].add_new(0x00400008, "SQ", Sequence([Dataset()]))
    ds.add_new(0x00291010, "OB", bytes(range(40)))                 # private, inline
    ds.add_new(0x00291011, "OW", bytes(900))                       # private, bulk (> 768)
    ds.add_new(0x00291012, "UN", b"\x01\x02\x03\x04")
    ds.add_new(0x00291013, "UL", [7, 8])
    ds.add_new(0x00291014, "UT", "free text\\not split")
    return ds


def _meta(ds: Dataset, syntax: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    return ds


def part10(ds: Dataset, syntax: str) -> bytes:
    out = BytesIO()
    _meta(ds, syntax).save_as(out, enforce_file_format=True,
                              implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    return out.getvalue()


def _undefined_lengths(raw: bytes) -> bytes:
    """The same file with its sequences and items written with undefined length, as many
    modalities write them (pydicom writes defined lengths when it can)."""
    from pydicom import dcmread
    ds = dcmread(BytesIO(raw))
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=ds.original_encoding[0],
               little_endian=True)
    return out.getvalue()


def _encapsulated(n: int, frames: int, bot: bool, syntax: str = JPEGBaseline8Bit) -> bytes:
    ds = _base(n, frames=frames)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    fragments = [bytes([0xFF, 0xD8, i, 0, 0xFF, 0xD9]) for i in range(frames)]
    ds.PixelData = encapsulate(fragments, has_bot=bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return part10(ds, syntax)


def dicom_seeds() -> dict[str, bytes]:
    explicit_rich = part10(_rich(_base(1)), ExplicitVRLittleEndian)
    implicit_rich = part10(_rich(_base(2)), ImplicitVRLittleEndian)
    return {
        "explicit-minimal.dcm": part10(_base(3), ExplicitVRLittleEndian),
        "implicit-minimal.dcm": part10(_base(4), ImplicitVRLittleEndian),
        "explicit-rich.dcm": explicit_rich,
        "implicit-rich.dcm": implicit_rich,
        "explicit-undefined-sq.dcm": _undefined_lengths(explicit_rich),
        "implicit-undefined-sq.dcm": _undefined_lengths(implicit_rich),
        "explicit-multiframe.dcm": part10(_base(5, size=2, frames=3), ExplicitVRLittleEndian),
        "implicit-multiframe.dcm": part10(_base(6, size=2, frames=3), ImplicitVRLittleEndian),
        "jpeg-3frames-bot.dcm": _encapsulated(7, 3, True),
        "jpeg-3frames-nobot.dcm": _encapsulated(8, 3, False),
        "rle-1frame.dcm": _encapsulated(9, 1, False, RLELossless),
        "latin1.dcm": part10(_latin1(_base(10)), ExplicitVRLittleEndian),
    }


def _latin1(ds: Dataset) -> Dataset:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyDescription = "Schädel"
    return ds


def synth_seeds() -> dict[str, bytes]:
    """Two files the synthetic cohort writes (Explicit VR LE and RLE radiographs)."""
    from gateway.synth import write_cohort
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(Path(tmp), patients=2, seed=1, ct_slices=2, xr_size=64)
        files = sorted(Path(tmp).rglob("*.dcm"))
        chosen = {}
        for path in files:
            raw = path.read_bytes()
            kind = "rle" if b"1.2.840.10008.1.2.5\0" in raw[:400] else "explicit"
            chosen.setdefault(f"synth-{kind}.dcm", raw)
        return chosen


def identifier(ds: Dataset, implicit: bool) -> bytes:
    """A C-FIND identifier as it travels in a P-DATA PDU (no preamble, no file meta)."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


def identifier_seeds() -> dict[str, bytes]:
    seeds = {}
    study = Dataset()
    study.QueryRetrieveLevel = "STUDY"
    study.PatientID, study.PatientName, study.StudyDate = "COVID-19-AR-1*", "", "20200101-20201231"
    study.StudyTime, study.ModalitiesInStudy, study.StudyInstanceUID = "", "CT\\DX", ""
    study.NumberOfStudyRelatedInstances = ""
    series = Dataset()
    series.QueryRetrieveLevel = "SERIES"
    series.StudyInstanceUID = "1.2.826.0.1.3680043.10.2"
    series.Modality, series.SeriesNumber, series.SeriesInstanceUID = "CT", "2", ""
    series.add_new(0x00081250, "SQ", Sequence([Dataset()]))  # a sequence return key
    image = Dataset()
    image.SpecificCharacterSet = "ISO_IR 192"
    image.QueryRetrieveLevel = "IMAGE"
    image.SOPInstanceUID = "1.2.3.4\\1.2.3.5"
    image.InstanceNumber, image.Rows, image.PatientName = "3", 512, "Müller*"
    image.add_new(0x00291010, "LO", "private")
    patient = Dataset()
    patient.QueryRetrieveLevel = "PATIENT"
    patient.PatientID, patient.PatientBirthDate, patient.PatientSex = "*", "19500101-", "F"
    for name, ds in (("study", study), ("series", series), ("image", image), ("patient", patient)):
        for implicit in (True, False):
            raw = identifier(ds, implicit)
            seeds[f"{name}-{'implicit' if implicit else 'explicit'}"] = bytes([implicit]) + raw
    return seeds


def write() -> None:
    for target, seeds in (("dicomjson", {**dicom_seeds(), **synth_seeds()}),
                          ("identifiers", identifier_seeds())):
        folder = HERE / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, raw in seeds.items():
            (folder / name).write_bytes(raw)


if __name__ == "__main__":
    write()
