"""Parse one DICOM Part 10 file into what the index keeps (pure: no DB, no HTTP).

Everything a read path needs is computed here, once, at store time: the indexed
attributes, the DICOM JSON metadata (PS3.18 F.2) with bulk data replaced by
BulkDataURIs, and the byte ranges of every frame so frames are served with a
positioned read instead of re-parsing the file.
"""
from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError

from .protocol import FailureReason, Fragment
from .uids import is_uid

BULK_THRESHOLD = 1024  # bytes; larger binary values become BulkDataURIs
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
UNDEFINED = 0xFFFFFFFF
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
EXPLICIT_LE = "1.2.840.10008.1.2.1"
NO_OFFSET_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"})


class IngestError(Exception):
    """The file cannot be stored; ``reason`` is the STOW/C-STORE failure reason."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class InstanceRecord:
    """Index rows for one instance, keyed by schema column names."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    metadata: bytes

    @property
    def sop_uid(self) -> str:
        return self.instance["sop_uid"]

    @property
    def study_uid(self) -> str:
        return self.study["study_uid"]

    @property
    def series_uid(self) -> str:
        return self.series["series_uid"]


def parse_file(path: Path, *, sha256: str, size: int) -> InstanceRecord:
    """Read ``path`` (never its pixel data) and build the index record."""
    try:
        with warnings.catch_warnings():  # invalid values are kept as received, not reported
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), defer_size=BULK_THRESHOLD)
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
        uids = {k: _text(ds.get(k)) for k in REQUIRED_UIDS}
    except (InvalidDicomError, EOFError, struct.error) as exc:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"not a readable DICOM Part 10 file: {exc}")
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"cannot parse DICOM: {exc}")
    missing = [k for k, v in uids.items() if not v]
    if missing:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"missing required {', '.join(missing)}")
    if not ts:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, "file meta has no TransferSyntaxUID")
    meta_class = _text(ds.file_meta.get("MediaStorageSOPClassUID"))
    if meta_class and meta_class != uids["SOPClassUID"]:
        raise IngestError(FailureReason.SOP_CLASS_MISMATCH,
                          f"SOPClassUID {uids['SOPClassUID']} does not match the file meta "
                          f"MediaStorageSOPClassUID {meta_class}")
    for key, value in uids.items():
        if not is_uid(value):
            raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"{key} {value!r} is not a valid UID")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _record(ds, ts, uids, sha256=sha256, size=size)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"cannot parse DICOM: {exc}")


def _record(ds: pydicom.Dataset, ts: str, uids: dict[str, str], *, sha256: str,
            size: int) -> InstanceRecord:
    study, series, sop = uids["StudyInstanceUID"], uids["SeriesInstanceUID"], uids["SOPInstanceUID"]
    base = f"studies/{study}/series/{series}/instances/{sop}"
    frames_count = _int(ds.get("NumberOfFrames")) or (1 if 0x7FE00010 in ds else 0)
    bulk = _pop_bulk(ds, size)
    frames = _frame_table(ds, ts, bulk.get("7FE00010"), frames_count, size)
    doc = ds.to_json_dict(BULK_THRESHOLD, lambda elem: f"{base}/bulk/{int(elem.tag):08X}")
    for tag, (vr, _off, _len) in bulk.items():
        doc[tag] = {"vr": vr, "BulkDataURI": f"{base}/bulk/{tag}"}
    doc["00083002"] = {"vr": "UI", "Value": [ts]}  # AvailableTransferSyntaxUID (PS3.3 C.12.1)
    metadata = orjson.dumps(dict(sorted(doc.items())))
    return InstanceRecord(
        patient={"patient_id": _text(ds.get("PatientID")),
                 "patient_name": _text(ds.get("PatientName")),
                 "patient_birth_date": _date(ds.get("PatientBirthDate")),
                 "patient_sex": _text(ds.get("PatientSex"))},
        study={"study_uid": study, "study_date": _date(ds.get("StudyDate")),
               "study_time": normalise_time(_text(ds.get("StudyTime"))),
               "accession_number": _text(ds.get("AccessionNumber")),
               "referring_physician_name": _text(ds.get("ReferringPhysicianName")),
               "patient_age": _text(ds.get("PatientAge")),
               "study_id": _text(ds.get("StudyID")),
               "study_description": _text(ds.get("StudyDescription")),
               "institution_name": _text(ds.get("InstitutionName"))},
        series={"series_uid": series, "modality": _text(ds.get("Modality")),
                "series_number": _int(ds.get("SeriesNumber")),
                "series_description": _text(ds.get("SeriesDescription")),
                "series_date": _date(ds.get("SeriesDate")),
                "series_time": normalise_time(_text(ds.get("SeriesTime"))),
                "body_part_examined": _text(ds.get("BodyPartExamined")),
                "pps_start_date": _date(ds.get("PerformedProcedureStepStartDate")),
                "pps_start_time": normalise_time(_text(ds.get("PerformedProcedureStepStartTime")))},
        instance={"sop_uid": sop, "sop_class_uid": uids["SOPClassUID"],
                  "instance_number": _int(ds.get("InstanceNumber")),
                  "rows": _int(ds.get("Rows")), "columns": _int(ds.get("Columns")),
                  "bits_allocated": _int(ds.get("BitsAllocated")),
                  "number_of_frames": frames_count or None, "transfer_syntax": ts,
                  "size": size, "sha256": sha256,
                  "frames": None if frames is None else json.dumps(frames, separators=(",", ":"))},
        metadata=metadata)


def _pop_bulk(ds: pydicom.Dataset, size: int) -> dict[str, tuple[str, int, int]]:
    """Remove large top-level binary values; return tag → (VR, value offset, length)."""
    bulk: dict[str, tuple[str, int, int]] = {}
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement):
            continue
        is_pixel = int(tag) in PIXEL_TAGS
        if raw.value is not None and not is_pixel:
            continue  # small enough to have been read: stays inline
        vr = raw.VR or _dict_vr(int(tag))
        if not is_pixel and vr not in BULK_VRS:
            continue
        if raw.length != UNDEFINED and raw.value_tell + raw.length > size:
            raise IngestError(FailureReason.CANNOT_UNDERSTAND,
                              f"file is truncated: element {int(tag):08X} needs "
                              f"{raw.value_tell + raw.length} bytes, file has {size}")
        bulk[f"{int(tag):08X}"] = (vr, raw.value_tell, raw.length)
        del ds[tag]
    return bulk


def _frame_table(ds: pydicom.Dataset, ts: str, pixel: tuple[str, int, int] | None,
                 count: int, size: int) -> list[list[list[int]]] | None:
    """Byte ranges of each frame (PS3.5 A.4 for encapsulated data), or None."""
    if pixel is None or count == 0 or ts in NO_OFFSET_SYNTAXES:
        return None
    _vr, offset, length = pixel
    if length == UNDEFINED:
        return _encapsulated_frames(ds, offset, count, size)
    rows, cols = _int(ds.get("Rows")) or 0, _int(ds.get("Columns")) or 0
    spp, bits = _int(ds.get("SamplesPerPixel")) or 1, _int(ds.get("BitsAllocated")) or 0
    if bits % 8 or not rows or not cols:
        return None  # 1-bit or malformed: cut by decoding instead
    frame_len = rows * cols * spp * bits // 8
    if frame_len * count > length:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND,
                          f"pixel data holds {length} bytes, {count} frame(s) need {frame_len * count}")
    return [[[offset + i * frame_len, frame_len]] for i in range(count)]


def _encapsulated_frames(ds: pydicom.Dataset, offset: int, count: int,
                         size: int) -> list[list[list[int]]] | None:
    items = _read_items(Path(ds.filename), offset, size)
    if not items:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, "encapsulated pixel data has no items")
    bot_off, bot_len = items[0]
    fragments = items[1:]
    if count == 1:
        return [[[o, n] for o, n in fragments]]
    if len(fragments) == count:
        return [[[o, n]] for o, n in fragments]
    if bot_len:
        with open(ds.filename, "rb") as fh:
            fh.seek(bot_off)
            table = struct.unpack(f"<{bot_len // 4}I", fh.read(bot_len))
        first = fragments[0][0] - 8  # offsets count from the first fragment's item tag
        starts = [first + t for t in table] + [1 << 62]
        frames = [[[o, n] for o, n in fragments if starts[i] <= o - 8 < starts[i + 1]]
                  for i in range(len(table))]
        return frames if len(frames) == count and all(frames) else None
    return None


def _read_items(path: Path, offset: int, size: int) -> list[tuple[int, int]]:
    """(value offset, length) of each Item in an encapsulated sequence."""
    out: list[tuple[int, int]] = []
    with open(path, "rb") as fh:
        pos = offset
        while True:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                raise IngestError(FailureReason.CANNOT_UNDERSTAND,
                                  "file is truncated inside encapsulated pixel data")
            group, elem, length = struct.unpack("<HHI", head)
            if (group, elem) == (0xFFFE, 0xE0DD):
                return out
            if (group, elem) != (0xFFFE, 0xE000) or pos + 8 + length > size:
                raise IngestError(FailureReason.CANNOT_UNDERSTAND,
                                  f"corrupt or truncated pixel data item at byte {pos}")
            out.append((pos + 8, length))
            pos += 8 + length


def frames_from_json(text: str | None) -> tuple[tuple[Fragment, ...], ...] | None:
    if not text:
        return None
    return tuple(tuple(Fragment(o, n) for o, n in frame) for frame in json.loads(text))


def normalise_time(value: str) -> str:
    """TM → ``HHMMSS[.ffffff]`` so ranges compare as strings (PS3.5 6.2 allows HH, HHMM)."""
    value = value.replace(":", "").strip()
    if not value:
        return ""
    head, dot, frac = value.partition(".")
    return head.ljust(6, "0") + (dot + frac if frac else "")


def _dict_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _date(value: Any) -> str:
    return _text(value).replace(".", "")[:8]


def _int(value: Any) -> int | None:
    text = _text(value)
    try:
        return int(float(text.split("\\")[0])) if text else None
    except ValueError:
        return None
