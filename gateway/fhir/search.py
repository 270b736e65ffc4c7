"""Search parameters (as data) and the parsing of a search request into clauses.

Supported parameters per resource are listed once, in ``PARAMS``: the CapabilityStatement, the
repository's index columns and the parser all read this table, so what is advertised is what
works. Anything else is a 400 naming the parameter, unless ``Prefer: handling=lenient``.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from . import chains as C
from .outcome import invalid, not_supported

ANY = object()  # token: any system / any code


@dataclass(frozen=True)
class Param:
    name: str
    type: str               # token | string | date | reference | quantity | text | composite
    paths: tuple[str, ...]  # dotted element paths the value comes from
    doc: str = ""
    targets: tuple[str, ...] = ("Patient",)  # reference: the types it may point at
    url: str | None = None  # the first `extension` step of the paths keeps this url only
    components: tuple["Param", ...] = ()  # composite: its parts, in `$` order


def _p(name: str, kind: str, *paths: str, doc: str = "", **extra: Any) -> Param:
    return Param(name, kind, paths, doc, **extra)


US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"


_PATIENT = _p("patient", "reference", "subject", doc="The patient (subject) the resource is about")
_SUBJECT = _p("subject", "reference", "subject", doc="Alias of patient")
_ID = _p("_id", "token", "id", doc="Logical id")
_CODE = _p("code", "token", "code")
_VALUE_QUANTITY = _p("value-quantity", "quantity", "valueQuantity")
_VALUE_CONCEPT = _p("value-concept", "token", "valueCodeableConcept")

PARAMS: dict[str, dict[str, Param]] = {
    "Patient": {p.name: p for p in (
        _ID, _p("identifier", "token", "identifier"), _p("name", "string", "name"),
        _p("gender", "token", "gender"), _p("birthdate", "date", "birthDate"),
        _p("deceased", "token", "deceasedBoolean"),
        _p("address-postalcode", "string", "address.postalCode"),
        # US Core 6.1 SearchParameter us-core-race: Patient.extension(us-core-race).extension.value.code
        _p("race", "token", "extension.extension.valueCoding", url=US_CORE_RACE,
           doc="US Core race (OMB category or detailed code, urn:oid:2.16.840.1.113883.6.238)"))},
    "Condition": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("category", "token", "category"),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"), _p("code", "token", "code"),
        _p("onset-date", "date", "onsetDateTime"))},
    "Observation": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("category", "token", "category"), _CODE,
        _p("date", "date", "effectiveDateTime"), _p("status", "token", "status"),
        _VALUE_QUANTITY, _VALUE_CONCEPT,
        _p("code-value-quantity", "composite", components=(_CODE, _VALUE_QUANTITY),
           doc="Code and quantity value of the same Observation: code$[prefix]number"),
        _p("code-value-concept", "composite", components=(_CODE, _VALUE_CONCEPT),
           doc="Code and coded value of the same Observation: code$[system|]code"),
        _p("derived-from", "reference", "derivedFrom", targets=("ImagingStudy",),
           doc="The ImagingStudy the Observation was derived from"),
        _p("part-of", "reference", "partOf", targets=("ImagingStudy",),
           doc="The ImagingStudy the Observation is part of"),
        _p("_content", "text", "valueString", "code.text",
           doc="Text search: a phrase anywhere in the value text or code text"))},
    "DiagnosticReport": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("category", "token", "category"), _CODE,
        _p("date", "date", "effectiveDateTime"), _p("status", "token", "status"),
        _p("_content", "text", "conclusion", "code.text",
           doc="Text search: a phrase anywhere in the conclusion or code text"))},
    "Encounter": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("class", "token", "class"), _p("type", "token", "type"),
        _p("status", "token", "status"), _p("date", "date", "period"))},
    "MolecularSequence": {p.name: p for p in (
        _ID, _p("patient", "reference", "patient"), _p("type", "token", "type"))},
    "ImagingStudy": {p.name: p for p in (
        _ID, _PATIENT, _SUBJECT, _p("identifier", "token", "identifier"),
        _p("started", "date", "started"), _p("modality", "token", "modality"))},
    "Endpoint": {p.name: p for p in (
        _ID, _p("connection-type", "token", "connectionType"), _p("status", "token", "status"))},
}
STORED = ("Patient", "Condition", "Observation", "DiagnosticReport", "Encounter", "MolecularSequence")
# _include / _revinclude values we follow: (source type, parameter) -> target type
INCLUDES: dict[tuple[str, str], str] = {
    **{(t, p): "Patient" for t in STORED[1:] + ("ImagingStudy",) for p in ("patient", "subject")
       if p in PARAMS[t]},
    ("ImagingStudy", "endpoint"): "Endpoint",
}
RESULT_PARAMS = frozenset({"_count", "_offset", "_include", "_revinclude", "_summary", "_elements",
                           "_total", "_totalMethod", "_format", "_pretty", "_sort"})
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {"token": {"not", "missing"}, "string": {"exact", "contains", "missing"},
             "date": {"missing"}, "quantity": {"missing"}, "reference": {"missing"}, "text": set(),
             "composite": set()}
DEFAULT_COUNT, MAX_COUNT = 50, 1000  # MAX_COUNT: the default of MAX_FHIR_COUNT
MAX_OFFSET = 10**18  # below SQL's 64-bit integers, with room for offset + _count
_DIGITS = re.compile(r"^[0-9]+$")  # ASCII only: str.isdigit() also takes "²"


@dataclass(frozen=True)
class Clause:
    """One parameter occurrence: its values are ORed; clauses are ANDed."""

    param: Param
    modifier: str | None
    values: tuple


@dataclass
class SearchRequest:
    type: str
    clauses: list[Clause] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    includes: list[tuple[str, str]] = field(default_factory=list)
    revincludes: list[tuple[str, str]] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: bool = True
    ignored: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (parameter, what was done)
    sort: tuple = ()  # chains.SortKey, most significant first
    link_params: list[tuple[str, str]] = field(default_factory=list)  # for self/next links


def parse(kind: str, args: Iterable[tuple[str, str]], *, lenient: bool = False,
          max_count: int = MAX_COUNT) -> SearchRequest:
    """Validate and parse a search's query parameters (raises FhirError 400 naming the parameter)."""
    request = SearchRequest(kind)
    for key, raw in args:
        name, _, modifier = key.partition(":")
        if name in RESULT_PARAMS:
            _result_param(request, name, modifier, raw, max_count)
        elif C.is_chained(key):
            try:
                request.clauses.append(C.parse_key(kind, key, raw))
            except C.UnknownParameter:
                if not lenient:
                    raise
                request.ignored.append(key)
                continue
        elif name in PARAMS[kind]:
            param = PARAMS[kind][name]
            request.clauses.append(_clause(param, modifier or None, raw, key))
        elif lenient:
            request.ignored.append(key)
            continue
        else:
            raise invalid(f"Unknown search parameter {key!r} for {kind}", key)
        if name not in ("_offset", "_format"):
            request.link_params.append((key, raw))
    return request


def _result_param(request: SearchRequest, name: str, modifier: str, raw: str,
                  max_count: int) -> None:
    if modifier and not (name == "_sort" and modifier in ("asc", "desc")):
        raise invalid(f"{name} takes no modifier", f"{name}:{modifier}")
    if name in ("_count", "_offset"):
        value = paging_number(name, raw)
        if name == "_count":
            request.count = min(value, max_count)
            if value > max_count:  # R4 search, _count: a server may return fewer
                request.warnings.append((name, f"_count={raw[:40]} reduced to {max_count}, "
                                               "this server's maximum (MAX_FHIR_COUNT); "
                                               "follow the next link for more"))
        else:
            request.offset = value
    elif name in ("_include", "_revinclude"):
        source, _, target_param = raw.partition(":")
        param = target_param.split(":")[0]
        if (source, param) not in INCLUDES:
            raise not_supported(400, f"{name}={raw} is not supported", name)
        if name == "_include" and source != request.type:
            raise invalid(f"_include={raw} does not start from {request.type}", name)
        if name == "_revinclude" and INCLUDES[(source, param)] != request.type:
            raise invalid(f"_revinclude={raw} does not point at {request.type}", name)
        (request.includes if name == "_include" else request.revincludes).append((source, param))
    elif name == "_summary":
        if raw not in ("true", "false", "count", "text", "data"):
            raise invalid(f"_summary={raw} is not one of true, false, count, text, data", name)
        request.summary = None if raw == "false" else raw
    elif name == "_elements":
        request.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif name == "_sort":
        request.sort = C.add_sort(request.type, request.sort, raw, modifier)
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise invalid(f"_total={raw} is not one of none, estimate, accurate", name)
        request.total = raw != "none"


def paging_number(name: str, raw: str) -> int:
    """``_count`` or ``_offset``: ASCII digits; an offset no SQL integer holds is a 400 (a
    count that large is merely reduced to the maximum)."""
    if not _DIGITS.match(raw):
        raise invalid(f"{name} must be a non-negative integer, not {raw[:40]!r}", name)
    digits = raw.lstrip("0") or "0"
    value = int(digits) if len(digits) <= 19 else 10**19
    if name == "_offset" and value > MAX_OFFSET:
        raise invalid(f"{name}={raw[:40]} is larger than {MAX_OFFSET}", name)
    return value


def _clause(param: Param, modifier: str | None, raw: str, key: str) -> Clause:
    if param.type == "reference" and modifier in param.targets:
        modifier = None  # subject:Patient=X names the type it already refers to (R4 3.1.1.4.7)
    if modifier and modifier not in MODIFIERS.get(param.type, ()):
        raise not_supported(400, f"Modifier :{modifier} is not supported on {param.name}", key)
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise invalid(f"{key} must be true or false", key)
        return Clause(param, modifier, (raw == "true",))
    if param.type == "composite":
        return C.composite_clause(param, raw, key)
    parts = _split(raw)
    if not parts:
        raise invalid(f"{key} has no value", key)
    parser = {"token": _token, "string": _string, "text": _string, "date": _date,
              "reference": _reference, "quantity": _quantity}[param.type]
    if param.type == "reference" and param.targets != ("Patient",):
        parser = C.typed_reference(param.targets)
    return Clause(param, modifier, tuple(parser(p, key) for p in parts))


def _split(raw: str) -> list[str]:
    """Comma-separated alternatives; ``\\,`` is a literal comma (FHIR R4 search 3.1.1.5.7)."""
    parts = re.split(r"(?<!\\),", raw)
    return [p.replace("\\,", ",").strip() for p in parts if p.strip()]


def _token(text: str, key: str) -> tuple[Any, Any]:
    if "|" not in text:
        return ANY, text
    system, _, code = text.partition("|")
    return system, (code if code else ANY)


def _string(text: str, key: str) -> str:
    return normalise(text)


def normalise(text: str) -> str:
    """Case- and space-insensitive form for string search (R4 search: string matching)."""
    return " ".join(str(text).lower().split())


def _reference(text: str, key: str) -> str:
    ref = text.rstrip("/")
    parts = ref.split("/")
    if len(parts) >= 2 and parts[-2] != "Patient":
        raise invalid(f"{key}={text} is not a Patient reference", key)
    return parts[-1]


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def _prefix(text: str) -> tuple[str, str]:
    if text[:2] in PREFIXES and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


def date_range(text: str) -> tuple[str, str] | None:
    """The instant range [lo, hi] a FHIR date/dateTime value covers, as sortable strings."""
    m = _DATE.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) if g else None for g in m.groups()[:6])
    try:
        lo = dt.datetime(year, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    except ValueError:
        return None
    try:
        if month is None:
            hi = lo.replace(year=year + 1)
        elif day is None:
            hi = (lo.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        elif hour is None:
            hi = lo + dt.timedelta(days=1)
        elif second is None:
            hi = lo + dt.timedelta(minutes=1)
        else:
            hi = lo + dt.timedelta(seconds=1)
        hi -= dt.timedelta(microseconds=1)
    except (ValueError, OverflowError):  # the range ends with year 9999
        hi = dt.datetime.max
    return lo.isoformat(timespec="microseconds"), hi.isoformat(timespec="microseconds")


def _date(text: str, key: str) -> tuple[str, str, str]:
    prefix, value = _prefix(text)
    found = date_range(value)
    if found is None:
        raise invalid(f"{key}={text} is not a FHIR date (YYYY[-MM[-DD[Thh:mm[:ss][zone]]]])", key)
    if prefix == "ap":
        raise not_supported(400, f"prefix ap is not supported on {key}", key)
    return prefix, found[0], found[1]


def date_matches(prefix: str, q_lo: str, q_hi: str, lo: str, hi: str) -> bool:
    """R4 search 3.1.1.4.2: compare the target's range with the value's range."""
    if prefix == "eq":
        return lo >= q_lo and hi <= q_hi
    if prefix == "ne":
        return not (lo >= q_lo and hi <= q_hi)
    if prefix in ("gt", "sa"):
        return hi > q_hi if prefix == "gt" else lo > q_hi
    if prefix in ("lt", "eb"):
        return lo < q_lo if prefix == "lt" else hi < q_lo
    if prefix == "ge":
        return hi >= q_lo
    return lo <= q_hi  # le


def _quantity(text: str, key: str) -> tuple:
    prefix, rest = _prefix(text)
    number, _, unit = rest.partition("|")
    system, _, code = unit.partition("|") if "|" in unit else ("", "", unit)
    try:  # NaN, Infinity and exponents beyond a float's range are no number to compare
        value = Decimal(number)
        finite = value.is_finite()
        half = Decimal(5).scaleb(value.as_tuple().exponent - 1) if finite else Decimal(0)
        found = (float(value), float(half)) if finite else (math.nan, math.nan)
    except InvalidOperation:
        found = (math.nan, math.nan)
    if not all(map(math.isfinite, found)):
        raise invalid(f"{key}={text} is not [prefix]number[|system|code]", key)
    return prefix, found[0], found[1], system or None, code or None
