"""QIDO-RS query parameters → :class:`gateway.archive.Query` (PS3.18 10.6.1.2). Pure.

The archive does the matching (PS3.4 C.2.2.2); this module only translates the HTTP
spelling: keywords or tags as keys, ``includefield`` as a comma list (OHIF) or repeated
(dicomweb-client) or ``all``, UID lists with commas, and the paging parameters. Every
error names the offending parameter, because a 400 without a name is useless to debug.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from ..archive.attributes import Attribute, resolve, vr_of
from ..archive.errors import InvalidQuery
from ..archive.protocol import Level, Query, UidPath

ANYWHERE = UidPath()
MAX_RESULTS = 5000  # per response (MAX_QIDO_RESULTS); beyond it a Warning says more exist
MAX_OFFSET = 10**18  # below SQL's 64-bit integers, with room for offset + limit
_DIGITS = re.compile(r"^[0-9]+$")  # ASCII only: str.isdigit() also takes "²"
RESERVED = frozenset({"limit", "offset", "fuzzymatching", "includefield"})
# Multi-valued matching (PS3.4 C.2.2.2.1 lists): repeated keys and commas become "\".
LIST_VRS = frozenset({"UI", "CS"})
TRUNCATED_WARNING = ('299 tcia-gateway "The number of results exceeded the maximum supported '
                     'by the server. Additional results can be requested."')  # PS3.18 10.6.3.2


def parse(level: Level, args: Iterable[tuple[str, str]], where: UidPath = ANYWHERE, *,
          max_results: int = MAX_RESULTS) -> Query:
    """Build the archive query for a QIDO-RS request at ``level`` under ``where``.

    A ``limit`` above ``max_results`` (or none) is reduced to it: the server's maximum, with
    the Warning header when more matches exist (PS3.18 10.6.3.2); never a 400."""
    grouped: dict[str, list[str]] = {}
    for key, value in args:
        grouped.setdefault(key, []).append(value)
    limit = _non_negative(grouped.pop("limit", None), "limit")
    offset = _non_negative(grouped.pop("offset", None), "offset", MAX_OFFSET) or 0
    fuzzy = _boolean(grouped.pop("fuzzymatching", None), "fuzzymatching")
    fields, include_all = _includefields(grouped.pop("includefield", []))
    filters = {name: value for name, value in (_filter(k, v) for k, v in grouped.items())}
    if where.study:
        filters["StudyInstanceUID"] = where.study
    if where.series:
        filters["SeriesInstanceUID"] = where.series
    if limit is None or limit > max_results:
        limit = max_results
    return Query(level, filters, includefields=frozenset(fields), include_all=include_all,
                 fuzzy=fuzzy, limit=limit, offset=offset)


def _one(values: list[str] | None, name: str) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise InvalidQuery(f"query parameter {name!r} given {len(values)} times", name)
    return values[0].strip()


def _non_negative(values: list[str] | None, name: str, at_most: int | None = None) -> int | None:
    """An ASCII decimal; above ``at_most`` a 400 (no SQL integer holds 10**23), and any
    number that long is merely large for a ``limit`` (reduced to the maximum later)."""
    text = _one(values, name)
    if text is None or text == "":
        return None
    if not _DIGITS.match(text):
        raise InvalidQuery(f"{name}={text[:40]!r}: expected a non-negative integer", name)
    digits = text.lstrip("0") or "0"
    value = int(digits) if len(digits) <= 19 else 10**19
    if at_most is not None and value > at_most:
        raise InvalidQuery(f"{name}={text[:40]}: at most {at_most}", name)
    return value


def _boolean(values: list[str] | None, name: str) -> bool:
    text = _one(values, name)
    if text is None or text == "":
        return False
    if text.lower() not in ("true", "false"):
        raise InvalidQuery(f"{name}={text!r}: expected true or false", name)
    return text.lower() == "true"


def _includefields(values: list[str]) -> tuple[list[str], bool]:
    """``includefield=a,b`` and ``includefield=a&includefield=b`` alike (PS3.18 8.3.4.3)."""
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    include_all = any(n.lower() == "all" for n in names)
    fields = []
    for name in names:
        if name.lower() == "all":
            continue
        if "." in name:
            raise InvalidQuery(f"includefield {name!r}: sequence paths are not supported", name)
        if resolve(name) is None:
            raise InvalidQuery(f"includefield {name!r} is not a DICOM attribute keyword or tag",
                               name)
        fields.append(name)
    return fields, include_all


def _filter(key: str, values: list[str]) -> tuple[str, str]:
    """One ``{attributeID}={value}`` match key (PS3.18 8.3.4.1)."""
    if "." in key:
        raise InvalidQuery(f"query parameter {key!r}: sequence matching is not supported", key)
    found = resolve(key)
    if found is None:
        raise InvalidQuery(f"unknown query parameter {key!r}: not a DICOM attribute keyword "
                           "or tag, nor limit, offset, fuzzymatching or includefield", key)
    vr = found.vr if isinstance(found, Attribute) else vr_of(found)
    name = found.keyword if isinstance(found, Attribute) else key
    if vr in LIST_VRS:
        items = [i.strip() for v in values for i in v.replace(",", "\\").split("\\")]
        return name, "\\".join(i for i in items if i)
    if len(values) > 1:
        raise InvalidQuery(f"query parameter {key!r} given {len(values)} times; only UID and "
                           "code string attributes take lists", key)
    return name, values[0]


RETRIEVE_URL = "00081190"
_PATH = {Level.STUDY: (("studies", "0020000D"),),
         Level.SERIES: (("studies", "0020000D"), ("series", "0020000E")),
         Level.INSTANCE: (("studies", "0020000D"), ("series", "0020000E"),
                          ("instances", "00080018"))}


def with_retrieve_urls(matches: list[dict], level: Level, root: str) -> list[dict]:
    """Add RetrieveURL (0008,1190) to each match (PS3.18 10.6.3.3), in tag order."""
    steps = _PATH.get(level)
    if not steps:
        return matches
    out = []
    for match in matches:
        parts = []
        for name, tag in steps:
            value = match.get(tag, {}).get("Value")
            if not value:
                break
            parts.append(f"{name}/{value[0]}")
        else:
            match = dict(sorted({**match, RETRIEVE_URL: {
                "vr": "UR", "Value": [root + "/" + "/".join(parts)]}}.items()))
        out.append(match)
    return out


def touched(matches: list[dict]) -> list[tuple[str, str | None]]:
    """(StudyInstanceUID, PatientID) of each match, for the audit record (one per patient)."""
    out = []
    for match in matches:
        study = (match.get("0020000D", {}).get("Value") or [None])[0]
        patient = (match.get("00100020", {}).get("Value") or [None])[0]
        if study:
            out.append((str(study), str(patient) if patient else None))
    return out
