"""Modules every synthetic instance shares, pixel encoding and Part 10 writing.

Patient (PS3.3 C.7.1.1) with TCIA's de-identification attributes (PS3.15 Annex E, coded per
PS3.16 CID 7050) and its CTP private block (PS3.5 7.8), Clinical Trial Subject (C.7.1.3),
General Study (C.7.2.1), Patient Study (C.7.2.2), General Series (C.7.3.1), General Equipment
(C.7.5.1), SOP Common (C.12.1), General Image (C.7.6.1). Pixel data is written natively
(Implicit or Explicit VR Little Endian) or encapsulated with one fragment per frame: RLE Lossless
(PS3.5 G), JPEG Lossless SV1 (PS3.5 A.4.1, process 14) and JPEG 2000 Lossless (A.4.4).
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels.encoders import JPEG2000LosslessEncoder, RLELosslessEncoder
from pydicom.uid import UID

from . import tables as T
from .model import (
    IMPLICIT_VR_LE,
    JPEG_LOSSLESS,
    NATIVE_SYNTAXES,
    RLE_LOSSLESS,
    Marks,
    PatientSpec,
    SeriesSpec,
    StudySpec,
)

# The project's implementation class UID (PS3.7 D.3.3.2), 2.25 form of a fixed name-based UUID.
IMPLEMENTATION_CLASS_UID = "2.25.90036964747672796879490749440906121877"
IMPLEMENTATION_VERSION_NAME = "TCIAGW_SYNTH"
CHEST_CODE = ("43799004", "SCT", "Chest")  # PS3.16 CID 4031, body part CHEST
CTP_CREATOR = "CTP"
PAIRED = frozenset({"KIDNEY", "BREAST", "LUNG", "EYE", "EAR", "HIP", "KNEE", "SHOULDER"})  # TCIA's Clinical Trial Processor private block, group 0013
# RLE encoder: GDCM (~15 ms per 1024 px radiograph) when installed, else pydicom's pure-Python
# one (~0.5 s). Both are deterministic; the bytes differ between them, so one machine's output is
# reproducible as long as the installed encoders do not change.
RLE_PLUGIN = "gdcm" if "gdcm" in RLELosslessEncoder.available_plugins else "pydicom"


@dataclass(frozen=True)
class StudyJob:
    """One study to render: everything a worker process needs, picklable."""

    root: Path  # the collection folder
    seed: int
    xr_size: int
    ct_size: int
    patient: PatientSpec  # without its studies
    study: StudySpec
    marks: Marks


def job_for(root: Path, seed: int, xr_size: int, ct_size: int, p: PatientSpec, s: StudySpec,
            marks: Marks) -> StudyJob:
    return StudyJob(root, seed, xr_size, ct_size, replace(p, studies=()), s, marks)


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
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


def _patient_modules(ds: Dataset, p: PatientSpec, marks: Marks) -> None:
    """Patient with de-identification and the CTP block, Clinical Trial Subject."""
    ds.PatientName = p.patient_id  # TCIA: PatientName = PatientID
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = ""  # type 2: removed by the Basic Profile
    ds.PatientSex = p.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = T.DEID_METHOD
    ds.DeidentificationMethodCodeSequence = [code_item(v, "DCM", m) for v, m in T.DEID_CODES]
    block = ds.private_block(0x0013, CTP_CREATOR, create=True)
    block.add_new(0x10, "LO", marks.collection)  # Project Name
    block.add_new(0x11, "LO", marks.collection)  # Trial Name
    block.add_new(0x12, "LO", marks.site_name)  # Site Name
    block.add_new(0x13, "LO", marks.site_id)  # Site ID
    ds.ClinicalTrialSponsorName = "tcia-gateway synthetic cohort"
    ds.ClinicalTrialProtocolID = marks.collection
    ds.ClinicalTrialProtocolName = f"{marks.collection} synthetic twin"
    ds.ClinicalTrialSiteID = marks.site_id
    ds.ClinicalTrialSiteName = marks.site_name
    ds.ClinicalTrialSubjectID = p.patient_id


def _study_series_modules(ds: Dataset, p: PatientSpec, s: StudySpec, series: SeriesSpec
                          ) -> None:
    """General Study, Patient Study, General Series, General Equipment."""
    ds.StudyInstanceUID = s.uid
    ds.StudyDate, ds.StudyTime = f"{s.when:%Y%m%d}", f"{s.when:%H%M%S}"
    ds.ReferringPhysicianName = ""
    ds.StudyID = s.study_id
    ds.AccessionNumber = s.accession
    if s.description:
        ds.StudyDescription = s.description
    ds.PatientAge = f"{min(p.age, 999):03d}Y"
    if p.height_in:
        ds.PatientSize = f"{p.height_in * 0.0254:.2f}"
    if p.weight_lb:
        ds.PatientWeight = f"{p.weight_lb * 0.45359237:.1f}"
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    when = series_time(s, series)
    ds.SeriesDate, ds.SeriesTime = f"{when:%Y%m%d}", f"{when:%H%M%S}"
    if series.description:
        ds.SeriesDescription = series.description
    if series.body_part:
        ds.BodyPartExamined = series.body_part
    if series.kind != "sr" and (not series.body_part or series.body_part in PAIRED):
        ds.Laterality = ""  # type 2C (C.7.3.1): the part may be paired, the side is unknown
    if series.modality in ("CT", "MR") and series.kind != "xr":
        ds.PatientPosition = "HFS"  # type 2C for CT and MR (C.7.3.1)
    ds.Manufacturer = series.manufacturer or ""
    if series.model:
        ds.ManufacturerModelName = series.model
    ds.InstitutionName = ""


def series_time(s: StudySpec, series: SeriesSpec) -> datetime:
    return s.when + timedelta(minutes=series.minutes)


def base_dataset(job: StudyJob, series: SeriesSpec, index: int) -> Dataset:
    """The shared modules, plus SOP Common and the General Image identification."""
    s = job.study
    ds = Dataset()
    texts = (s.description, series.description, series.manufacturer, series.model)
    if any(t and not t.isascii() for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"  # real descriptions hold µ, ² (PS3.5 6.1.2.3)
    ds.SOPClassUID = series.sop_class
    ds.SOPInstanceUID = series.instance_uids[index]
    when = series_time(s, series)
    ds.InstanceCreationDate, ds.InstanceCreationTime = f"{when:%Y%m%d}", f"{when:%H%M%S}"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"  # (0028,0303): dates shifted
    _patient_modules(ds, job.patient, job.marks)
    _study_series_modules(ds, job.patient, s, series)
    ds.InstanceNumber = index + 1
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    return ds


def image_basics(ds: Dataset) -> None:
    """General Image attributes every image shares (C.7.6.1)."""
    ds.AcquisitionDate, ds.AcquisitionTime = ds.SeriesDate, ds.SeriesTime
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1


def _jpeg_lossless(pixels: np.ndarray, ds: Dataset) -> bytes:
    """JPEG Lossless, Non-Hierarchical, First-Order Prediction (process 14 SV1), by GDCM."""
    import gdcm

    writer = gdcm.ImageWriter()  # owns the image GDCM converts
    image = writer.GetImage()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((int(ds.Columns), int(ds.Rows), 1))
    samples = int(ds.SamplesPerPixel)
    image.SetPixelFormat(gdcm.PixelFormat(samples, int(ds.BitsAllocated), int(ds.BitsStored),
                                          int(ds.HighBit), int(ds.PixelRepresentation)))
    kind = gdcm.PhotometricInterpretation.GetPIType(str(ds.PhotometricInterpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    if samples > 1:
        image.SetPlanarConfiguration(0)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ImplicitVRLittleEndian))
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetByteStringValue(np.ascontiguousarray(pixels).tobytes())
    image.SetDataElement(element)
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(image)
    if not change.Change():
        raise RuntimeError("GDCM could not encode JPEG Lossless")
    fragments = change.GetOutput().GetDataElement().GetSequenceOfFragments()
    if fragments is None or fragments.GetNumberOfFragments() != 1:
        raise RuntimeError("GDCM returned an unexpected number of JPEG fragments")
    return fragments.GetFragment(0).GetByteValue().GetBuffer().encode("utf-8", "surrogateescape")


def _encode(pixels: np.ndarray, ds: Dataset, syntax: str) -> bytes:
    if syntax == JPEG_LOSSLESS:
        return _jpeg_lossless(pixels, ds)
    encoder = RLELosslessEncoder if syntax == RLE_LOSSLESS else JPEG2000LosslessEncoder
    plugin = RLE_PLUGIN if syntax == RLE_LOSSLESS else "pylibjpeg"
    return encoder.encode(pixels, encoding_plugin=plugin, rows=ds.Rows, columns=ds.Columns,
                          samples_per_pixel=ds.SamplesPerPixel, bits_allocated=ds.BitsAllocated,
                          bits_stored=ds.BitsStored, pixel_representation=ds.PixelRepresentation,
                          photometric_interpretation=ds.PhotometricInterpretation,
                          number_of_frames=1)


def pixel_value(ds: Dataset, pixels: np.ndarray | list[np.ndarray], syntax: str) -> bytes:
    """Native pixel bytes, or encapsulated fragments (one per frame, empty-offset BOT)."""
    frames = pixels if isinstance(pixels, list) else [pixels]
    if syntax in NATIVE_SYNTAXES:
        return b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    return encapsulate([_encode(f, ds, syntax) for f in frames], has_bot=False)


def set_pixels(ds: Dataset, pixels: np.ndarray | list[np.ndarray] | bytes, syntax: str) -> None:
    """Pixel Data (7FE0,0010) in ``syntax``: OW/OB natively, OB undefined length encapsulated."""
    value = pixels if isinstance(pixels, bytes) else pixel_value(ds, pixels, syntax)
    ds.PixelData = value
    if syntax in NATIVE_SYNTAXES:
        ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
        return
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def write_instance(ds: Dataset, path: Path, syntax: str) -> int:
    """Write a Part 10 file (preamble, meta, dataset) and return its size in bytes."""
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax)
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def meta_bytes(sop_class: str, sop_instance: str, syntax: str) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1), always Explicit VR LE."""
    def element(elem: int, vr: bytes, value: bytes) -> bytes:
        if vr == b"OB":
            return struct.pack("<HH2s2xI", 0x0002, elem, vr, len(value)) + value
        return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value
    name = IMPLEMENTATION_VERSION_NAME.encode("ascii")
    body = b"".join([
        element(0x0001, b"OB", b"\x00\x01"), element(0x0002, b"UI", _ui(sop_class)),
        element(0x0003, b"UI", _ui(sop_instance)), element(0x0010, b"UI", _ui(syntax)),
        element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
        element(0x0013, b"SH", name + b" " * (len(name) % 2))])
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"\0" * 128 + b"DICM" + length + body


_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
Values = dict[str, str | list[str]]


def _element(ds: Dataset, keyword: str) -> DataElement:
    """The element named ``keyword`` of ``ds``, which the first instance always holds."""
    elem = ds.data_element(keyword)
    if elem is None:
        raise KeyError(keyword)
    return elem


class Template:
    """A series' instances differ in a few text elements and the pixels: the rest is encoded once.

    Built from the first instance's data set; ``encode`` then writes the per-instance values
    and the pixel data itself. The bytes equal what ``Dataset.save_as`` writes for the same
    values (a unit test compares them), at a fraction of the cost: pydicom's writer takes a few
    ms per file, most of the time when thousands of 64 px slices are written."""

    def __init__(self, ds: Dataset, syntax: str, varying: list[str]) -> None:
        self.implicit, self.syntax = syntax == IMPLICIT_VR_LE, syntax
        self.charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
        self.vrs = {int(_element(ds, k).tag): _element(ds, k).VR.encode() for k in varying}
        self.parts: list[bytes | int] = []
        run = Dataset()
        for elem in ds:
            tag = int(elem.tag)
            if tag in self.vrs or tag == 0x7FE00010:
                if len(run):
                    self.parts.append(self._bytes(run))
                    run = Dataset()
                self.parts.append(tag)
            else:
                run.add(elem)
        if len(run):
            self.parts.append(self._bytes(run))
        self.keywords = {int(_element(ds, k).tag): k for k in varying}
        self.sop_class, self.pixel_vr = str(ds.SOPClassUID), ds["PixelData"].VR.encode()

    def _bytes(self, ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = self.implicit, True
        write_dataset(fp, ds, self.charset)  # a run may lack (0008,0005): pass it down
        return fp.getvalue()

    def _element(self, tag: int, vr: bytes, value: bytes, undefined: bool = False) -> bytes:
        length = 0xFFFFFFFF if undefined else len(value)
        if self.implicit:
            return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length) + value
        if vr in _LONG_VRS:
            return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, length) + value
        return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, length) + value

    def _text(self, tag: int, value: str | list[str]) -> bytes:
        vr = self.vrs[tag]
        raw = ("\\".join(value) if isinstance(value, list) else value).encode("ascii")
        if len(raw) % 2:
            raw += b"\0" if vr == b"UI" else b" "
        return self._element(tag, vr, raw)

    def encode(self, values: Values, pixels: bytes) -> bytes:
        out = [meta_bytes(self.sop_class, str(values["SOPInstanceUID"]), self.syntax)]
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
            elif part == 0x7FE00010:
                encapsulated = self.syntax not in NATIVE_SYNTAXES
                if encapsulated:
                    out.append(self._element(part, b"OB", pixels, undefined=True)
                               + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
                else:
                    out.append(self._element(part, self.pixel_vr,
                                             pixels + b"\0" * (len(pixels) % 2)))
            else:
                out.append(self._text(part, values[self.keywords[part]]))
        return b"".join(out)


class SeriesWriter:
    """Writes a series' instances: the first sets up the template, every one goes through it."""

    def __init__(self, ds: Dataset, syntax: str) -> None:
        self.ds, self.syntax = ds, syntax
        self.template: Template | None = None
        self.bytes = 0

    def write(self, path: Path, values: Values, pixels: np.ndarray | list[np.ndarray]) -> None:
        encoded = pixel_value(self.ds, pixels, self.syntax)
        if self.template is None:
            for keyword, value in values.items():
                setattr(self.ds, keyword, value)
            set_pixels(self.ds, encoded, self.syntax)
            self.template = Template(self.ds, self.syntax, list(values))
        data = self.template.encode(values, encoded)
        path.write_bytes(data)
        self.bytes += len(data)
