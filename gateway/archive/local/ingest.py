"""Parse one DICOM Part 10 file into what the index keeps (pure: no DB, no HTTP).

Everything a read path needs is computed here, once, at store time: the indexed
attributes, the DICOM JSON metadata (PS3.18 F.2) with bulk data replaced by
BulkDataURIs, and the byte ranges of every frame so frames are served with a
positioned read instead of re-parsing the file. The fast reader
(:mod:`gateway.archive.local.dicomjson`) handles Explicit VR Little Endian data sets;
everything else goes through pydicom, with the same result.
"""
from __future__ import annotations

import base64
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.hooks import raw_element_vr
from pydicom.errors import InvalidDicomError

from . import dicomjson, frametable
from .frametable import UNDEFINED, BadPixelData
from ..protocol import FailureReason
from ..uids import is_uid

BULK_THRESHOLD = 1024  # base64 characters; larger binary values become BulkDataURIs
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
REQUIRED_UIDS = {"SOPClassUID": "00080016", "SOPInstanceUID": "00080018",
                 "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E"}


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
    parsed = _parse(path, size)
    uids = {k: _text(parsed.doc, tag) for k, tag in REQUIRED_UIDS.items()}
    _check(parsed, uids)
    try:
        return _record(path, parsed, uids, sha256=sha256, size=size)
    except BadPixelData as exc:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, str(exc)) from None


def _parse(path: Path, size: int) -> dicomjson.Parsed:
    """The fast reader, or pydicom where it declines."""
    placeholder = "{BULK}/"  # replaced once the UIDs (the URI's path) are known
    try:
        return dicomjson.read(path, lambda tag: placeholder + tag)
    except (dicomjson.Unsupported, dicomjson.Truncated, OSError, struct.error, UnicodeDecodeError):
        pass  # pydicom has the last word, on odd files and on damaged ones
    try:
        with warnings.catch_warnings():  # invalid values are kept as received, not reported
            warnings.simplefilter("ignore")
            return _pydicom(path, size, placeholder)
    except IngestError:
        raise
    except (InvalidDicomError, EOFError, struct.error) as exc:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND,
                          f"not a readable DICOM Part 10 file: {exc}") from None
    except BadPixelData as exc:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, str(exc)) from None
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"cannot parse DICOM: {exc}") from None


def _pydicom(path: Path, size: int, placeholder: str) -> dicomjson.Parsed:
    ds = pydicom.dcmread(str(path), defer_size=BULK_THRESHOLD)
    meta = {k: str(ds.file_meta.get(k, "") or "") for k in dicomjson.META_KEYS.values()}
    bulk = _pop_bulk(ds, size)
    doc = ds.to_json_dict(BULK_THRESHOLD, lambda elem: f"{placeholder}{int(elem.tag):08X}")
    for tag in [t for t in doc if t.endswith("0000")]:
        del doc[tag]  # group lengths are not part of the JSON model (PS3.18 F.2)
    for tag, (vr, _off, _len) in bulk.items():
        doc[tag] = {"vr": vr, "BulkDataURI": placeholder + tag}
    fragments = None
    pixel = bulk.get("7FE00010")
    if pixel and pixel[2] == UNDEFINED:
        fragments = frametable.read_items(path, pixel[1], size)
    return dicomjson.Parsed(meta, doc, bulk, fragments)


def _check(parsed: dicomjson.Parsed, uids: dict[str, str]) -> None:
    missing = [k for k, v in uids.items() if not v]
    if missing:
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"missing required {', '.join(missing)}")
    if not parsed.meta.get("TransferSyntaxUID"):
        raise IngestError(FailureReason.CANNOT_UNDERSTAND, "file meta has no TransferSyntaxUID")
    meta_class = parsed.meta.get("MediaStorageSOPClassUID")
    if meta_class and meta_class != uids["SOPClassUID"]:
        raise IngestError(FailureReason.SOP_CLASS_MISMATCH,
                          f"SOPClassUID {uids['SOPClassUID']} does not match the file meta "
                          f"MediaStorageSOPClassUID {meta_class}")
    for key, value in uids.items():
        if not is_uid(value):
            raise IngestError(FailureReason.CANNOT_UNDERSTAND, f"{key} {value!r} is not a valid UID")


def _record(path: Path, parsed: dicomjson.Parsed, uids: dict[str, str], *, sha256: str,
            size: int) -> InstanceRecord:
    doc, ts = parsed.doc, parsed.meta["TransferSyntaxUID"]
    study, series, sop = uids["StudyInstanceUID"], uids["SeriesInstanceUID"], uids["SOPInstanceUID"]
    count = _int(doc, "00280008") or (1 if "7FE00010" in doc else 0)
    image = {k: _int(doc, t) for k, t in (("Rows", "00280010"), ("Columns", "00280011"),
                                          ("SamplesPerPixel", "00280002"),
                                          ("BitsAllocated", "00280100"))}
    frames = frametable.frame_table(path, ts, parsed.bulk.get("7FE00010"), parsed.fragments,
                                    image, count)
    doc["00083002"] = {"vr": "UI", "Value": [ts]}  # AvailableTransferSyntaxUID (PS3.3 C.12.1)
    base = f"studies/{study}/series/{series}/instances/{sop}/bulk/"
    metadata = orjson.dumps(dict(sorted(doc.items()))).replace(b"{BULK}/", base.encode())
    t, d = (lambda tag: _text(doc, tag)), (lambda tag: _text(doc, tag).replace(".", "")[:8])
    return InstanceRecord(
        patient={"patient_id": t("00100020"), "patient_name": t("00100010"),
                 "patient_birth_date": d("00100030"), "patient_sex": t("00100040")},
        study={"study_uid": study, "study_date": d("00080020"),
               "study_time": normalise_time(t("00080030")), "accession_number": t("00080050"),
               "referring_physician_name": t("00080090"), "patient_age": t("00101010"),
               "study_id": t("00200010"), "study_description": t("00081030"),
               "institution_name": t("00080080"), "collection": ctp_project(doc)},
        series={"series_uid": series, "modality": t("00080060"),
                "series_number": _int(doc, "00200011"), "series_description": t("0008103E"),
                "series_date": d("00080021"), "series_time": normalise_time(t("00080031")),
                "body_part_examined": t("00180015"), "pps_start_date": d("00400244"),
                "pps_start_time": normalise_time(t("00400245"))},
        instance={"sop_uid": sop, "sop_class_uid": uids["SOPClassUID"],
                  "instance_number": _int(doc, "00200013"), "rows": image["Rows"],
                  "columns": image["Columns"], "bits_allocated": image["BitsAllocated"],
                  "number_of_frames": count or None, "transfer_syntax": ts, "size": size,
                  "sha256": sha256, "frames": frametable.to_json(frames)},
        metadata=metadata)


def _pop_bulk(ds: pydicom.Dataset, size: int) -> dict[str, tuple[str, int, int]]:
    """Remove large top-level binary values; return tag → (VR, value offset, length)."""
    bulk: dict[str, tuple[str, int, int]] = {}
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == 0:
            continue  # converted already, or empty: stays in the JSON without a value
        is_pixel = int(tag) in PIXEL_TAGS
        if raw.value is not None and not is_pixel:
            continue  # small enough to have been read: stays inline
        vr = raw.VR or _implicit_vr(ds, raw)
        if not is_pixel and vr not in BULK_VRS:
            continue
        if raw.length != UNDEFINED and raw.value_tell + raw.length > size:
            raise IngestError(FailureReason.CANNOT_UNDERSTAND,
                              f"file is truncated: element {int(tag):08X} needs "
                              f"{raw.value_tell + raw.length} bytes, file has {size}")
        bulk[f"{int(tag):08X}"] = (vr, raw.value_tell, raw.length)
        del ds[tag]
    return bulk


def normalise_time(value: str) -> str:
    """TM → ``HHMMSS[.ffffff]`` so ranges compare as strings (PS3.5 6.2 allows HH, HHMM)."""
    value = value.replace(":", "").strip()
    if not value:
        return ""
    head, dot, frac = value.partition(".")
    return head.ljust(6, "0") + (dot + frac if frac else "")


def _implicit_vr(ds: pydicom.Dataset, raw: RawDataElement) -> str:
    """The VR pydicom gives a deferred Implicit VR element: its dictionary's (private ones by
    their creator), with OB or OW resolved as PS3.5 A.1 does (OW unless encapsulated)."""
    data: dict[str, Any] = {}
    raw_element_vr(raw, data, ds=ds)
    vr = str(data["VR"])
    if vr == "OB or OW":
        return "OB" if raw.length == UNDEFINED else "OW"
    return vr.split(" or ")[0]


def ctp_project(doc: dict) -> str | None:
    """The collection TCIA's CTP wrote into the file: ProjectName (0013,xx10) of the private
    block whose creator (0013,00xx) is ``CTP`` (PS3.5 7.8.1; docs/collections.md), or None."""
    for tag in doc:
        if tag.startswith("001300") and tag[6:] >= "10" and _text(doc, tag) == "CTP":
            return _value_text(doc.get(f"0013{tag[6:]}10", {})) or None
    return None


def _value_text(element: dict) -> str:
    """A short string value, also when it came as UN (Implicit VR without a dictionary)."""
    if element.get("InlineBinary"):
        raw = base64.b64decode(element["InlineBinary"])
        return raw.decode("ascii", "replace").strip(" \x00")[:64]
    values = element.get("Value") or [""]
    return str(values[0] or "").strip()[:64]


def _text(doc: dict, tag: str) -> str:
    """An attribute as index text: multiple values joined by backslash, PN as written."""
    values = doc.get(tag, {}).get("Value")
    if not values:
        return ""
    parts = []
    for v in values:
        if isinstance(v, dict):  # PN: component groups joined by '=' (PS3.5 6.2.1)
            groups = [v.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
            v = "=".join(groups).rstrip("=")
        parts.append("" if v is None else str(v))
    return "\\".join(parts).strip()


def _int(doc: dict, tag: str) -> int | None:
    values = doc.get(tag, {}).get("Value")
    if not values or values[0] in (None, ""):
        return None
    try:
        return int(float(values[0]))
    except (TypeError, ValueError):
        return None
