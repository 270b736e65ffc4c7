"""A fast reader of Part 10 files straight into the DICOM JSON model (PS3.18 F.2).

Pure (no Flask, no DB). It reads the file through ``mmap`` and walks Explicit and Implicit
VR Little Endian data elements itself, so the store path never builds pydicom objects:
building them and calling ``Dataset.to_json_dict`` cost ~2.4 ms per CT slice, this ~0.4 ms.
Implicit VR data sets (PS3.5 7.1.3, A.1) take their VRs from the DICOM dictionary as pydicom
does: standard and repeating-group tags from pydicom's dictionary, private tags from its
private dictionary by their block's creator (PS3.5 7.8.1; TCIA's CTP block is added to it
below), UN otherwise, and the ambiguous ones resolved as pydicom resolves them (OW pixel
data, US or SS by Pixel Representation). The output equals pydicom's ``to_json_dict``
(checked by tests on pydicom's own test files and the synthetic cohorts). Anything it does
not handle exactly like pydicom (big endian data sets, deflate, explicit UN elements,
character sets other than the default, Latin-1 and UTF-8, odd values, rare ambiguous VRs)
raises :class:`Unsupported`, and the caller falls back to pydicom.
"""
from __future__ import annotations

import base64
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydicom.datadict import (
    DicomDictionary,
    add_private_dict_entries,
    dictionary_VR,
    private_dictionary_VR,
)

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                      "UV"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
VRS = LONG_VRS | {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN",
                  "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"}  # PS3.5 Table 6.2-1
NUMBERS = {"FL": "f", "FD": "d", "SL": "l", "SS": "h", "SV": "q", "UL": "L", "US": "H",
           "UV": "Q"}
# Data sets in these syntaxes are Explicit VR Little Endian (PS3.5 A.2, A.4).
EXPLICIT_LE = "1.2.840.10008.1.2.1"  # exactly: "...1.2.1.99" is deflated
IMPLICIT_LE = "1.2.840.10008.1.2"  # PS3.5 A.1
ENCAPSULATED_PREFIX = "1.2.840.10008.1.2.4."
RLE = "1.2.840.10008.1.2.5"
CHARSETS = {"": "iso8859", "ISO_IR 6": "iso8859", "ISO_IR 100": "latin_1",
            "ISO_IR 192": "utf_8"}
INLINE_LIMIT = (1024 // 4) * 3  # pydicom's bulk threshold for 1024 base64 characters
EMPTY_PN = {"Alphabetic": ""}
# Ambiguous dictionary VRs an Implicit VR reader must resolve (PS3.5 A.1, PS3.3 C.7.6.3.1):
# these become OW; US or SS follows Pixel Representation; the rest go to pydicom.
OW_IN_IMPLICIT = frozenset({0x7FE00010, 0x54000110, 0x54000112, 0x5400100A, 0x54001010,
                            *(g << 16 | 0x3000 for g in range(0x6000, 0x601F, 2))})
US_OR_SS = frozenset({0x00189810, 0x00221452, 0x00280104, 0x00280105, 0x00280106, 0x00280107,
                      0x00280108, 0x00280109, 0x00280110, 0x00280111, 0x00280120, 0x00280121,
                      0x00409211, 0x00409216, 0x00603004, 0x00603006})
# TCIA marks every file with its CTP block (PS3.5 7.8): group 0013, creator "CTP". Known to
# the private dictionary, its elements keep their VR in Implicit VR files, on both paths.
CTP_PRIVATE = {0x00131010: ("LO", "1", "Project Name", ""),
               0x00131011: ("LO", "1", "Trial Name", ""),
               0x00131012: ("LO", "1", "Site Name", ""),
               0x00131013: ("LO", "1", "Site ID", "")}
add_private_dict_entries("CTP", CTP_PRIVATE)
_STANDARD = DicomDictionary  # tag -> (VR, VM, name, retired, keyword): the common case


class Unsupported(Exception):
    """This file needs the general (pydicom) reader."""


class Truncated(Exception):
    """A value runs past the end of the file."""


@dataclass
class Parsed:
    meta: dict[str, str]                       # file meta keywords we use
    doc: dict[str, Any]                        # DICOM JSON of the data set
    bulk: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # top level
    fragments: list[tuple[int, int]] | None = None  # encapsulated pixel data items


META_KEYS = {0x00020002: "MediaStorageSOPClassUID", 0x00020003: "MediaStorageSOPInstanceUID",
             0x00020010: "TransferSyntaxUID"}


def read(path: Path, bulk_uri: Callable[[str], str]) -> Parsed:
    """Parse ``path``; ``bulk_uri(tag)`` names the BulkDataURI of large binary values."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size < 132:
            raise Unsupported("too short for a Part 10 file")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[128:132] != b"DICM":
                raise Unsupported("no DICM prefix")
            meta, pos = _meta(buf, size)
            ts = meta.get("TransferSyntaxUID", "")
            implicit = ts == IMPLICIT_LE
            if not implicit and ts not in (EXPLICIT_LE, RLE) and \
                    not ts.startswith(ENCAPSULATED_PREFIX):
                raise Unsupported("data set is neither Explicit nor Implicit VR Little Endian")
            reader = _Reader(buf, size, bulk_uri, implicit)
            doc, _ = reader.dataset(pos, size, top=True)
            return Parsed(meta, doc, reader.bulk, reader.fragments)


def _meta(buf: mmap.mmap, size: int) -> tuple[dict[str, str], int]:
    """File meta group (PS3.10 7.1), always Explicit VR Little Endian."""
    pos, out = 132, {key: "" for key in META_KEYS.values()}  # as the pydicom path reports
    while pos + 8 <= size:
        group, elem = struct.unpack_from("<HH", buf, pos)
        if group != 0x0002:
            return out, pos
        vr = buf[pos + 4:pos + 6].decode("ascii", "replace")
        if vr not in VRS:  # pydicom reads such an element as implicit VR: let it
            raise Unsupported(f"file meta element without an explicit VR at byte {pos}")
        if vr in LONG_VRS:
            length, vpos = struct.unpack_from("<I", buf, pos + 8)[0], pos + 12
        else:
            length, vpos = struct.unpack_from("<H", buf, pos + 6)[0], pos + 8
        if length == UNDEFINED or vpos + length > size:
            raise Unsupported("odd file meta")
        key = META_KEYS.get((group << 16) | elem)
        if key:
            raw = buf[vpos:vpos + length]
            if not raw.isascii():
                raise Unsupported(f"file meta {key} is not ASCII")
            out[key] = raw.decode("ascii").rstrip("\0 ")
        pos = vpos + length
    raise Unsupported("file meta runs to the end of the file")


class _Reader:
    def __init__(self, buf: mmap.mmap, size: int, bulk_uri: Callable[[str], str],
                 implicit: bool = False) -> None:
        self.buf, self.size, self.bulk_uri, self.implicit = buf, size, bulk_uri, implicit
        self.encoding = "iso8859"
        self.bulk: dict[str, tuple[str, int, int]] = {}
        self.fragments: list[tuple[int, int]] | None = None

    def header(self, pos: int) -> tuple[int, str, int, int]:
        """(tag, VR, value length, value offset) of the element at ``pos``."""
        if pos + 8 > self.size:
            raise Truncated(f"data element header at byte {pos} runs past the end")
        group, elem = struct.unpack_from("<HH", self.buf, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            return tag, "", struct.unpack_from("<I", self.buf, pos + 4)[0], pos + 8
        if self.implicit:  # PS3.5 7.1.3: tag, 32-bit length, value
            return tag, "", struct.unpack_from("<I", self.buf, pos + 4)[0], pos + 8
        vr = self.buf[pos + 4:pos + 6].decode("ascii", "replace")
        if vr in LONG_VRS:
            return tag, vr, struct.unpack_from("<I", self.buf, pos + 8)[0], pos + 12
        if not vr.isalpha() or not vr.isupper():
            raise Unsupported(f"no explicit VR at byte {pos}")
        return tag, vr, struct.unpack_from("<H", self.buf, pos + 6)[0], pos + 8

    def dataset(self, pos: int, end: int | None, top: bool = False) -> tuple[dict, int]:
        """Elements from ``pos`` to ``end`` (or to an Item Delimitation Item)."""
        out: dict[str, Any] = {}
        limit = self.size if end is None else end
        creators: dict[int, str] = {}  # private block (group << 8 | block) -> creator
        deferred: list[tuple[int, int, int]] = []  # US or SS: resolved once the set is read
        while pos < limit:
            tag, vr, length, vpos = self.header(pos)
            if tag == ITEM_END and end is None:
                return self.resolved(out, deferred), vpos
            if tag >> 16 == 0x0000:  # PS3.7 E.1: command elements; pydicom reads them its way
                raise Unsupported(f"command group element {tag:08X} in the data set")
            if not vr and tag >> 16 != 0xFFFE:
                entry = _STANDARD.get(tag) if tag & 0xFFFF and tag >> 16 != 0x0002 else None
                vr = entry[0] if entry is not None and len(entry[0]) == 2 else \
                    self.implicit_step(tag, length, vpos, top, creators, deferred)
                if not vr:  # skipped, or read once the data set's Pixel Representation is
                    if length == UNDEFINED:  # pydicom reads it as a sequence
                        raise Unsupported(f"undefined length element {tag:08X} skipped")
                    pos = vpos + length
                    continue
            if vr == "SQ":
                seq_end = None if length == UNDEFINED else vpos + length
                items, pos = self.sequence(vpos, seq_end)
                self.within(pos, limit, tag)
                out[f"{tag:08X}"] = {"vr": "SQ", "Value": items}
                continue
            if length == UNDEFINED:
                if not (top and tag in PIXEL_TAGS):
                    raise Unsupported(f"undefined length {vr} element {tag:08X}")
                pos = self.encapsulated(tag, vr, vpos)
                out[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": self.bulk_uri(f"{tag:08X}")}
                continue
            if vpos + length > self.size:
                raise Truncated(f"element {tag:08X} needs {vpos + length} bytes, "
                                f"file has {self.size}")
            self.within(vpos + length, limit, tag)
            if top and tag >> 16 == 0x0002:  # after the file meta: pydicom keeps it, as data
                raise Unsupported(f"file meta element {tag:08X} inside the data set")
            if (tag & 0xFFFF) == 0:
                if not top:  # pydicom keeps a group length inside an item: let it read these
                    raise Unsupported(f"group length {tag:08X} inside a sequence item")
                pos = vpos + length  # top-level group lengths are not part of the JSON model
                continue
            out[f"{tag:08X}"] = self.element(tag, vr, vpos, length, top)
            if self.implicit and tag >> 16 & 1 and 0x10 <= tag & 0xFFFF <= 0xFF:
                creators[(tag >> 16) << 8 | (tag & 0xFF)] = self.creator(out[f"{tag:08X}"])
            pos = vpos + length
        if end is None and not top:
            raise Truncated("item without its delimitation item")
        return self.resolved(out, deferred), pos

    def implicit_step(self, tag: int, length: int, vpos: int, top: bool,
                      creators: dict[int, str], deferred: list[tuple[int, int, int]]) -> str:
        """The VR of an Implicit VR element, or "" when it is skipped (group lengths) or
        deferred (US or SS)."""
        if top and tag >> 16 == 0x0002:  # after the file meta: pydicom keeps it, as data
            raise Unsupported(f"file meta element {tag:08X} inside the data set")
        if (tag & 0xFFFF) == 0:
            return ""
        vr = self.implicit_vr(tag, length, creators, top)
        if vr != "US or SS":
            return vr
        if vpos + length > self.size:
            raise Truncated(f"element {tag:08X} runs past the end")
        deferred.append((tag, vpos, length))
        return ""

    def implicit_vr(self, tag: int, length: int, creators: dict[int, str], top: bool) -> str:
        """The VR pydicom gives an Implicit VR element (its raw_element_vr and
        correct_ambiguous_vr_element), or :class:`Unsupported`."""
        entry = DicomDictionary.get(tag)
        if entry is not None:
            vr = entry[0]
        elif tag >> 16 & 1:  # private group (PS3.5 7.8.1)
            vr = self.private_vr(tag, creators)
        else:
            try:
                vr = dictionary_VR(tag)  # repeating groups (curves, overlays)
            except KeyError:
                vr = "UN"
        if " or " not in vr:
            return vr
        if tag in OW_IN_IMPLICIT and length != UNDEFINED:
            return "OW"
        if tag in US_OR_SS and top:
            return "US or SS"
        raise Unsupported(f"ambiguous VR {vr} of {tag:08X}")

    @staticmethod
    def private_vr(tag: int, creators: dict[int, str]) -> str:
        element = tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            return "LO"  # Private Creator
        creator = creators.get((tag >> 16) << 8 | element >> 8) if element & 0xFF00 else None
        if not creator:
            return "UN"
        try:
            return private_dictionary_VR(tag, creator)
        except KeyError:
            return "UN"

    @staticmethod
    def creator(item: dict) -> str:
        values = item.get("Value") or [""]
        if len(values) != 1:
            raise Unsupported("private creator with several values")
        return values[0]

    def resolved(self, out: dict[str, Any], deferred: list[tuple[int, int, int]]) -> dict:
        """US or SS elements of a top-level data set: SS only for Pixel Representation 1."""
        if not deferred:
            return out
        if "00280103" in out:
            values = out["00280103"].get("Value")
            if not values:
                raise Unsupported("US or SS element with an empty Pixel Representation")
            signed = values[0] != 0
        elif "7FE00010" in out:
            raise Unsupported("US or SS element without Pixel Representation")
        else:
            signed = False
        vr = "SS" if signed else "US"
        for tag, vpos, length in deferred:
            out[f"{tag:08X}"] = self.element(tag, vr, vpos, length, True)
        return out

    def sequence(self, pos: int, end: int | None) -> tuple[list[dict], int]:
        items: list[dict] = []
        while end is None or pos < end:
            tag, _vr, length, vpos = self.header(pos)
            if tag == SEQ_END and end is None:
                return items, vpos
            if tag != ITEM:
                raise Unsupported(f"expected an item at byte {pos}")
            if length == UNDEFINED:
                item, pos = self.dataset(vpos, None)
            else:
                item, _ = self.dataset(vpos, vpos + length)
                pos = vpos + length
            if end is not None:
                self.within(pos, end, tag)
            items.append(item)
        return items, pos

    @staticmethod
    def within(stop: int, limit: int, tag: int) -> None:
        """A value, item or sequence ends inside what contains it (PS3.5 7.5)."""
        if stop > limit:
            raise Unsupported(f"{tag:08X} runs past the end of its item or sequence")

    def encapsulated(self, tag: int, vr: str, pos: int) -> int:
        """Walk the items of encapsulated pixel data (PS3.5 A.4); return the end."""
        start, items = pos, []
        while True:
            item, _vr, length, vpos = self.header(pos)
            if item == SEQ_END:
                break
            if item != ITEM or length == UNDEFINED or vpos + length > self.size:
                raise Truncated(f"corrupt or truncated pixel data item at byte {pos}")
            items.append((vpos, length))
            pos = vpos + length
        if not items:
            raise Truncated("encapsulated pixel data has no items")
        self.fragments = items
        self.bulk[f"{tag:08X}"] = (vr, start, UNDEFINED)
        return vpos

    def element(self, tag: int, vr: str, pos: int, length: int, top: bool) -> dict:
        if tag == 0x00080005:
            self.charset(self.buf[pos:pos + length])
        if vr in BINARY_VRS or tag in PIXEL_TAGS or (vr == "UN" and self.implicit):
            if top and (tag in PIXEL_TAGS or length > INLINE_LIMIT):
                self.bulk[f"{tag:08X}"] = (vr, pos, length)
            if length == 0:
                return {"vr": vr}
            if length > INLINE_LIMIT or tag in PIXEL_TAGS:
                return {"vr": vr, "BulkDataURI": self.bulk_uri(f"{tag:08X}")}
            return {"vr": vr, "InlineBinary": base64.b64encode(self.buf[pos:pos + length]).decode()}
        value = _VALUE.get(vr)
        if value is None:
            raise Unsupported(f"VR {vr} of {tag:08X}")
        items = value(self, self.buf[pos:pos + length]) if length else []
        if not items or (len(items) == 1 and items[0] in ("", EMPTY_PN)):
            return {"vr": vr}  # an empty value has no "Value" (VM 0), as in pydicom
        return {"vr": vr, "Value": items}

    def charset(self, raw: bytes) -> None:
        names = raw.decode("ascii", "replace").rstrip("\0 ").split("\\")
        if len(names) != 1 or names[0].strip() not in CHARSETS:
            raise Unsupported(f"SpecificCharacterSet {raw!r}")
        self.encoding = CHARSETS[names[0].strip()]

    def text(self, raw: bytes) -> str:
        return raw.decode(self.encoding)


# ----------------------------------------------------------- value decoders
def _multi(r: _Reader, raw: bytes) -> list[str]:
    """AS, CS, DA, DT, TM: trailing padding off the whole value, then split."""
    return r.text(raw).rstrip(" \x00").split("\\")


def _ae(r: _Reader, raw: bytes) -> list[str]:
    return [s.strip() for s in r.text(raw).split("\\")]


def _texts(r: _Reader, raw: bytes) -> list[str]:
    """LO, SH, UC: each value's trailing padding off."""
    return [s.rstrip("\0 ") for s in r.text(raw).split("\\")]


def _single(r: _Reader, raw: bytes) -> list[str]:
    """LT, ST, UT: one value, backslashes included."""
    return [r.text(raw).rstrip("\0 ")]


def _ur(r: _Reader, raw: bytes) -> list[str]:
    return [r.text(raw).rstrip()]


def _ui(r: _Reader, raw: bytes) -> list[str]:
    return [s.strip() for s in r.text(raw).rstrip("\0 ").split("\\")]  # as pydicom's UID


def _ds(r: _Reader, raw: bytes) -> list[float]:
    try:
        return [float(v) for v in r.text(raw).strip().rstrip(" \x00").split("\\")]
    except ValueError:
        raise Unsupported("DS value pydicom would keep as text") from None


def _is(r: _Reader, raw: bytes) -> list[int]:
    try:
        return [int(v) for v in r.text(raw).strip().rstrip(" \x00").split("\\")]
    except ValueError:
        raise Unsupported("IS value pydicom would keep as text") from None


def _pn(r: _Reader, raw: bytes) -> list[dict[str, str]]:
    out = []
    for name in r.text(raw.rstrip(b"\x00 ")).split("\\"):
        groups = name.split("=")
        entry = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            entry["Ideographic"] = groups[1]
        if len(groups) > 2:
            entry["Phonetic"] = groups[2]
        out.append(entry)
    return out


def _at(_r: _Reader, raw: bytes) -> list[str]:
    pairs = struct.unpack(f"<{len(raw) // 2}H", raw[: len(raw) // 4 * 4])
    return [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]


def _numbers(code: str) -> Callable[[_Reader, bytes], list]:
    size = struct.calcsize("<" + code)  # standard sizes, not the platform's

    def decode(_r: _Reader, raw: bytes) -> list:
        if len(raw) % size:
            raise Unsupported("numeric value of odd length")
        return list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    return decode


_VALUE: dict[str, Callable[[_Reader, bytes], list]] = {
    "AE": _ae, "AS": _multi, "CS": _multi, "DA": _multi, "DT": _multi, "TM": _multi,
    "LO": _texts, "SH": _texts, "UC": _texts, "LT": _single, "ST": _single, "UT": _single,
    "UR": _ur, "UI": _ui, "DS": _ds, "IS": _is, "PN": _pn, "AT": _at,
    **{vr: _numbers(code) for vr, code in NUMBERS.items()},
}
