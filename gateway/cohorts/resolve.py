"""What a cohort is made from, turned into conditions on the index tables, then into its series.

A cohort request names its members one of three ways: FHIR searches (``ImagingStudy?...``,
``Patient?...`` or any stored type, whose patients are meant; several are ANDed, as Bulk
Cohort ``member-filter`` extensions are), a QIDO-RS query (``studies?...``, ``series?...``),
or explicit lists of patients, studies and series (their union). Each FHIR search is parsed
and compiled by the FHIR face's own parser and SQL (so a cohort means exactly what the same
search means at /fhir) and becomes a subquery; the series are then one SELECT over
``series ⋈ studies ⋈ patients`` with every condition inside it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..archive.errors import InvalidQuery
from ..archive.protocol import Archive, Level, Query
from ..dicomweb import qido
from ..fhir import search as S
from ..fhir.service import FhirService
from ..fhir.sqlsearch import compile_search
from . import facetsql

MAX_MEMBERS = 100_000  # explicit UIDs or QIDO matches per cohort


class CohortError(ValueError):
    """A cohort request that cannot be answered: 400 with this reason (and the field)."""

    def __init__(self, reason: str, field_name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field_name


@dataclass
class Conditions:
    """SQL conditions over ``series se ⋈ studies s ⋈ patients p`` (ANDed), with their binds;
    ``patients`` the ones that are about patients alone (ids of Patient resources that may
    have no images), as subqueries with ``{pid}`` for the patient id."""

    style: str
    params: dict[str, Any] = field(default_factory=dict)
    where: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    imaging_only: bool = False  # some condition is on studies or series: members need images

    def bind(self, value: Any) -> str:
        name = f"k{len(self.params)}"
        self.params[name] = value
        return f":{name}" if self.style == "colon" else f"%({name})s"

    def in_list(self, column: str, values: list[str]) -> str:
        if not values:
            return "1 = 0"
        return f"{column} IN ({', '.join(self.bind(v) for v in values)})"

    def merge(self, params: dict[str, Any], prefix: str) -> dict[str, str]:
        """Take a compiled search's binds under a prefix of their own; the renames to apply."""
        renames = {}
        for name, value in params.items():
            new = f"{prefix}{name}"
            self.params[new] = value
            renames[name] = new
        return renames


def conditions(spec: Any, fhir: FhirService, archive: Archive) -> Conditions:
    """The conditions of a cohort request (a JSON object); CohortError when it is not one."""
    if not isinstance(spec, dict):
        raise CohortError("the body must be a JSON object with 'fhir', 'qido' or member lists")
    kinds = [k for k in ("fhir", "qido", "facets") if k in spec]
    lists = [k for k in ("patients", "studies", "series") if k in spec]
    if len(kinds) + (1 if lists else 0) != 1:
        raise CohortError("give exactly one of 'fhir', 'qido', 'facets' or explicit "
                          "'patients'/'studies'/'series' lists")
    found = Conditions(fhir.repository.bind_style)
    if "fhir" in spec:
        queries = spec["fhir"] if isinstance(spec["fhir"], list) else [spec["fhir"]]
        if not queries or not all(isinstance(q, str) for q in queries):
            raise CohortError("'fhir' must be a search (or a list of them) like "
                              "'ImagingStudy?modality=CT'", "fhir")
        for n, query in enumerate(queries):
            fhir_condition(found, fhir, query, f"q{n}_")
    elif "qido" in spec:
        qido_condition(found, archive, spec["qido"])
    elif "facets" in spec:
        facets_condition(found, spec["facets"])
    else:
        explicit_condition(found, {k: spec[k] for k in lists})
    return found


def fhir_condition(found: Conditions, fhir: FhirService, query: str, prefix: str) -> None:
    """One FHIR search as a subquery: studies for ImagingStudy, patients for the rest."""
    kind, sep, text = query.strip().lstrip("/").partition("?")
    kind = kind.removeprefix("fhir/")
    if kind not in S.PARAMS or kind == "Endpoint":
        raise CohortError(f"{kind!r} is not a searchable type for a cohort: use Patient, "
                          "ImagingStudy or a clinical type (Condition, Observation, ...)", "fhir")
    args = [(k, v) for k, v in parse_qsl(text, keep_blank_values=True)
            if k not in ("_count", "_offset", "_sort", "_summary", "_total", "_elements")]
    request = S.parse(kind, args, lenient=False)  # FhirError 400 names the parameter
    request.count = 0
    if kind == "ImagingStudy":
        if fhir.studies is None:
            raise CohortError("ImagingStudy cohorts need the embedded archive", "fhir")
        compiled = fhir.studies.compile(request)
        select, column = "SELECT s.pk", "s.pk"
        found.imaging_only = True
    else:
        compiled = compile_search(request, fhir.repository.bind_style)
        select, column = ("SELECT r.id" if kind == "Patient" else "SELECT r.patient_id"), None
    sql = _rename(compiled.count.replace("SELECT COUNT(*)", select, 1),
                  found.merge(compiled.params, prefix), found.style)
    if column is not None:
        found.where.append(f"{column} IN ({sql})")
    else:
        found.where.append(f"p.patient_id IN ({sql})")
        found.patients.append(f"{{pid}} IN ({sql})")


def _rename(sql: str, renames: dict[str, str], style: str) -> str:
    """Bind names of a compiled search moved under their prefix (longest first: b10 ≠ b1)."""
    for old in sorted(renames, key=len, reverse=True):
        new = renames[old]
        sql = (sql.replace(f":{old}", f":{new}") if style == "colon"
               else sql.replace(f"%({old})s", f"%({new})s"))
    return sql


def qido_condition(found: Conditions, archive: Archive, text: Any) -> None:
    """A QIDO-RS search on studies or series, run by the archive, its UIDs then listed."""
    if not isinstance(text, str):
        raise CohortError("'qido' must be a query like 'studies?ModalitiesInStudy=CT'", "qido")
    resource, _, query = text.strip().lstrip("/").removeprefix("dicomweb/").partition("?")
    levels = {"studies": (Level.STUDY, "0020000D", "s.study_uid"),
              "series": (Level.SERIES, "0020000E", "se.series_uid")}
    if resource not in levels:
        raise CohortError(f"qido: {resource!r} is not 'studies' or 'series'", "qido")
    level, tag, column = levels[resource]
    try:
        parsed = qido.parse(level, parse_qsl(query, keep_blank_values=True),
                            max_results=MAX_MEMBERS)
    except InvalidQuery as exc:
        raise CohortError(f"qido: {exc}", "qido") from exc
    parsed = dataclasses.replace(parsed, includefields=frozenset(), include_all=False)
    matches = archive.search(Query(level, parsed.filters, fuzzy=parsed.fuzzy,
                                   limit=MAX_MEMBERS + 1)).matches
    if len(matches) > MAX_MEMBERS:
        raise CohortError(f"qido: more than {MAX_MEMBERS} matches; narrow the query", "qido")
    uids = [m[tag]["Value"][0] for m in matches if m.get(tag, {}).get("Value")]
    found.where.append(found.in_list(column, uids))
    found.imaging_only = True


def facets_condition(found: Conditions, chosen: Any) -> None:
    """The home page's selection (facets.py): the studies it counts."""
    if not isinstance(chosen, dict) or not all(
            k in facetsql.FACETS and isinstance(v, list) for k, v in chosen.items()):
        raise CohortError(f"'facets' maps facet names ({', '.join(facetsql.FACETS)}) to lists "
                          "of values", "facets")
    selection = facetsql.Selection(chosen, found.style)
    sql = facetsql.study_pks_sql(selection)
    renames = found.merge(selection.params, "s_")
    for old in sorted(renames, key=len, reverse=True):
        sql = (sql.replace(f":{old}", f":{renames[old]}") if found.style == "colon"
               else sql.replace(f"%({old})s", f"%({renames[old]})s"))
    found.where.append(f"s.pk IN ({sql})")
    found.imaging_only = True


def explicit_condition(found: Conditions, lists: dict[str, Any]) -> None:
    """The union of the listed patients, studies and series."""
    columns = {"patients": "p.patient_id", "studies": "s.study_uid", "series": "se.series_uid"}
    parts = []
    total = 0
    for key, values in lists.items():
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise CohortError(f"'{key}' must be a list of identifiers", key)
        total += len(values)
        parts.append(found.in_list(columns[key], list(dict.fromkeys(values))))
    if total == 0:
        raise CohortError("the member lists are empty", next(iter(lists)))
    if total > MAX_MEMBERS:
        raise CohortError(f"more than {MAX_MEMBERS} members listed", next(iter(lists)))
    found.where.append("(" + " OR ".join(parts) + ")")
    patients = [v for v in lists.get("patients", [])]
    if patients and len(lists) == 1:
        found.patients.append(found.in_list("{pid}", patients))
    else:
        found.imaging_only = True
