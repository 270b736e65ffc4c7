"""C-FIND identifiers ↔ archive queries and DICOM JSON (pure: pydicom only).

Both directions speak PS3.4 C.2.2.2 matching strings, so translation is mostly a
change of container: keywords and values go across unchanged, dates lose the
ACR-NEMA dots, and return keys are zero-length elements (PS3.4 C.4.1.1.3).
"""
from __future__ import annotations

from typing import Iterable

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ..archive.attributes import BY_KEYWORD, DEFAULT_RETURN, Attribute, resolve, visible_at
from ..archive.errors import InvalidQuery
from ..archive.protocol import Level, Query

# Elements that describe the query, not the matches (PS3.4 C.4.1.1.3.1, C.4.1.2.3).
QUERY_ONLY_TAGS = frozenset({0x00080005, 0x00080052, 0x00080054, 0x00080056, 0x00088000})
# VRs whose values may use SpecificCharacterSet (PS3.5 6.1.2.3); the others are ASCII.
EXTENDED_TEXT = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
# Binary numeric VRs (PS3.5 Table 6.2-1): Python type and range of a value.
BINARY_NUMBERS = {"US": (int, 0, 0xFFFF), "SS": (int, -0x8000, 0x7FFF),
                  "UL": (int, 0, 0xFFFFFFFF), "SL": (int, -0x80000000, 0x7FFFFFFF),
                  "UV": (int, 0, (1 << 64) - 1), "SV": (int, -(1 << 63), (1 << 63) - 1),
                  "FL": (float, -3.4028234663852886e38, 3.4028234663852886e38),
                  "FD": (float, -1.7976931348623157e308, 1.7976931348623157e308)}
QR_LEVELS = {"PATIENT": Level.PATIENT, "STUDY": Level.STUDY, "SERIES": Level.SERIES,
             "IMAGE": Level.INSTANCE}


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _put(ds: Dataset, tag: int, value: str) -> None:
    """Set an element without pydicom's value validation: matching strings such as
    ``2020-2021`` or ``1.2.3\\1.2.4`` are valid keys but not valid single values."""
    vr = _vr(tag)
    if vr == "SQ":
        ds[tag] = DataElement(tag, vr, [], validation_mode=pydicom_config.IGNORE)
        return
    parts: str | list = value.split("\\") if "\\" in value else value
    if vr in BINARY_NUMBERS and value:
        parts = _numbers(tag, vr, value)
    ds[tag] = DataElement(tag, vr, parts, validation_mode=pydicom_config.IGNORE)


def _numbers(tag: int, vr: str, value: str) -> list:
    """Binary numeric VRs are encoded as numbers, not text (PS3.5 6.2): a value that is
    not one of the VR's numbers is no key a peer can be sent (PS3.4 C.2.2.2.1)."""
    kind, low, high = BINARY_NUMBERS[vr]
    try:
        numbers = [kind(v) for v in value.split("\\")]
    except ValueError:
        numbers = []
    if not numbers or not all(low <= n <= high for n in numbers):
        name = keyword_for_tag(tag) or f"{tag:08X}"
        raise InvalidQuery(f"{name}: {value!r} is not a valid {vr} value", name)
    return numbers


def _tag_of(name: str, level: Level) -> tuple[int, Attribute | None]:
    found = resolve(name)
    if found is None:
        raise InvalidQuery(f"{name!r} is not a DICOM attribute keyword or tag", name)
    if isinstance(found, Attribute):
        if found.keyword == "Modality" and level is Level.STUDY:
            found = BY_KEYWORD["ModalitiesInStudy"]  # OHIF sends Modality at study level
        return int(found.tag, 16), found
    return int(found, 16), None


def find_identifier(query: Query) -> Dataset:
    """The C-FIND request identifier for ``query`` (PS3.4 C.4.1.1.3, C.6.1.1)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = query.level.dimse
    returned = [name for name in DEFAULT_RETURN[query.level]] + sorted(query.includefields)
    for name in returned:
        tag, _attr = _tag_of(name, query.level)
        if tag >> 16 not in (0x0000, 0x0002) and tag not in ds:
            _put(ds, tag, "")
    for name, value in query.filters.items():
        tag, attr = _tag_of(name, query.level)
        value = value.strip()
        if attr is not None and attr.vr == "DA":
            value = value.replace(".", "")
        if query.fuzzy and attr is not None and attr.vr == "PN" and value and "*" not in value:
            value = "*" + "*".join(value.replace("^", " ").split()) + "*"
        _put(ds, tag, value)
    for elem in ds.iterall():
        if elem.VR not in EXTENDED_TEXT and not str(elem.value or "").isascii():
            name = elem.keyword or f"{int(elem.tag):08X}"
            raise InvalidQuery(f"{name}: a {elem.VR} value takes only the default character "
                               "repertoire (PS3.5 6.1.2.2)", name)
    if any(not str(e.value or "").isascii() for e in ds.iterall() if e.VR in EXTENDED_TEXT):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def result_json(ds: Dataset) -> dict:
    """One C-FIND match as DICOM JSON (PS3.18 F.2), without the query-only elements.
    Only what the peer returned is there: nothing is invented."""
    doc = ds.to_json_dict(bulk_data_threshold=1 << 30)
    for tag in QUERY_ONLY_TAGS:
        doc.pop(f"{tag:08X}", None)
    return dict(sorted(doc.items()))


def query_from_identifier(ds: Dataset, root: str) -> tuple[Query, list[int]]:
    """An incoming C-FIND identifier → archive Query + the tags to answer with.

    Keys the archive can match at the level become filters; every other key is a
    return key (universal matching, as PS3.4 C.4.1.2.3 allows for optional keys)."""
    level_text = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
    level = QR_LEVELS.get(level_text)
    if level is None:
        raise InvalidQuery(f"QueryRetrieveLevel {level_text!r} is not one of "
                           f"{', '.join(QR_LEVELS)}", "QueryRetrieveLevel")
    if root == "S" and level is Level.PATIENT:
        raise InvalidQuery("the Study Root model has no PATIENT level (PS3.4 C.6.2)",
                           "QueryRetrieveLevel")
    filters: dict[str, str] = {}
    includes: set[str] = set()
    tags: list[int] = []
    for elem in ds:
        tag = int(elem.tag)
        if tag >> 16 in (0x0000, 0x0002) or tag in QUERY_ONLY_TAGS or elem.tag.is_private:
            continue
        tags.append(tag)
        name = keyword_for_tag(tag) or f"{tag:08X}"
        value = _text(elem)
        attr = resolve(name)
        matchable = (isinstance(attr, Attribute) and visible_at(attr, level)
                     and not attr.computed or name == "ModalitiesInStudy")
        if value and matchable and elem.VR != "SQ":
            filters[name] = value
        else:
            includes.add(name)
    return Query(level, filters, includefields=frozenset(includes)), tags


def _text(elem: DataElement) -> str:
    if elem.VR == "SQ" or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    if isinstance(value, bytes):
        return ""
    return str(value).strip()


def answer(match: dict, tags: Iterable[int], level: Level) -> Dataset:
    """A C-FIND response identifier: exactly the requested keys (PS3.4 C.4.1.1.3.2),
    zero-length where the archive has no value."""
    found = Dataset.from_json({k: v for k, v in match.items() if "BulkDataURI" not in v})
    out = Dataset()
    out.SpecificCharacterSet = "ISO_IR 192"  # values come from UTF-8 JSON
    out.QueryRetrieveLevel = level.dimse
    for tag in tags:
        if Tag(tag) in found:
            out[tag] = found[tag]
        else:
            _put(out, tag, "")
    return out
