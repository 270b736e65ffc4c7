"""ImagingStudy search over the embedded archive's own index tables, in one SQL statement.

With the embedded archive the index database holds the studies (``patients``, ``studies``,
``series``: gateway/archive/local/schema.py) next to the FHIR tables, so a search on ImagingStudy,
with chains to Patient and ``_has`` from Observation, is one SELECT: the matching, the sort,
the page, its series and the total (a window count). The resources are those the archive path
builds (ImagingBuilder), from the same indexed values, so a study is the same resource
whichever path found it.

A remote PACS (C-FIND) cannot join clinical data: there, chained and ``_has`` parameters on
ImagingStudy are refused with a 400 naming the parameter (``refuse_joins``).
"""
from __future__ import annotations

from typing import Any

from ..clinical import repository as R
from . import chains as C
from . import search as S
from . import sqlsearch as X
from .imaging import ImagingBuilder
from .outcome import not_supported

OWNER = X.Owner(id="s.study_uid", patient="p.patient_id", pk=None)
_DAY = "substr(s.study_date, 1, 4) || '-' || substr(s.study_date, 5, 2) || '-' || substr(s.study_date, 7, 2)"
_LO, _HI = f"({_DAY} || 'T00:00:00.000000')", f"({_DAY} || 'T23:59:59.999999')"
_FROM = "FROM studies s JOIN patients p ON p.pk = s.patient_pk"
_STUDY_COLUMNS = ("0020000D", "00100020", "00080020", "00081030", "00080061", "00201206", "00201208")
_SERIES_COLUMNS = ("0020000E", "00200011", "00080060", "0008103E", "00201209")
_PAGE = (
    "SELECT pg.n, s.study_uid, p.patient_id, s.study_date, s.study_description, s.modalities, "
    "s.num_series, s.num_instances, se.series_uid, se.series_number, se.modality, "
    "se.series_description, se.num_instances, s.collection, pg.total FROM ("
    "SELECT s.pk AS pk, ROW_NUMBER() OVER (ORDER BY {order}) AS n, COUNT(*) OVER () AS total "
    f"{_FROM} WHERE {{where}} ORDER BY n LIMIT {{count}} OFFSET {{offset}}) pg "
    "JOIN studies s ON s.pk = pg.pk JOIN patients p ON p.pk = s.patient_pk "
    "LEFT JOIN series se ON se.study_pk = s.pk ORDER BY pg.n, se.pk")


class StudyIndex:
    """Compiles (once per search plan) and runs ImagingStudy searches on the index tables."""

    def __init__(self, repository: R.Repository, builder: ImagingBuilder) -> None:
        self.repository = repository
        self.builder = builder

    def compile(self, request: S.SearchRequest) -> R.CompiledSearch:
        bind = X.Binds(self.repository.bind_style)
        where = " AND ".join(self._sql(c, bind) for c in request.clauses) or "1 = 1"
        if request.compartment is not None:  # a patient/ token: its compartment only
            where += f" AND p.patient_id = {bind(request.compartment)}"
        if request.hidden:  # restricted collections this caller is not granted
            names = ", ".join(bind(c) for c in sorted(request.hidden))
            where += f" AND (s.collection IS NULL OR s.collection NOT IN ({names}))"
        count_sql = f"SELECT COUNT(*) {_FROM} WHERE {where}"
        page_sql = None if request.count == 0 else _PAGE.format(
            order=self._order(request.sort, bind), where=where, count=int(request.count),
            offset=int(request.offset))
        return R.CompiledSearch(page_sql, count_sql, dict(bind), request.offset, total_at=14)

    def search(self, query: R.CompiledSearch) -> tuple[list[dict], int]:
        """One page of ImagingStudy resources and the total: one statement (two only for a
        page past the end, which needs the total on its own)."""
        rows, total = self.repository.run(query)
        pages: dict[int, tuple[dict, list[dict], str | None]] = {}
        for row in rows:
            study = pages.get(row[0])
            if study is None:
                study = pages[row[0]] = (_dicom(_STUDY_COLUMNS, row[1:8]), [], row[13])
            if row[8] is not None:
                study[1].append(_dicom(_SERIES_COLUMNS, row[8:13]))
        return [self.builder.study(s, series, collection)
                for s, series, collection in pages.values()], total

    # ----------------------------------------------------------------- where
    def _sql(self, clause: Any, bind: X.Binds) -> str:
        if isinstance(clause, (C.Chain, C.Has)):
            return X.criterion_sql(clause, bind, OWNER)
        name = clause.param.name
        if clause.modifier:
            raise not_supported(400, f"Modifier :{clause.modifier} is not supported on "
                                     f"ImagingStudy {name}", f"{name}:{clause.modifier}")
        if name in ("patient", "subject"):
            return f"p.patient_id IN ({', '.join(bind(v) for v in clause.values)})"
        if name in ("_id", "identifier"):
            uids = [u for u in (self.builder._uid(name, s, c) for s, c in clause.values) if u]
            return f"s.study_uid IN ({', '.join(bind(u) for u in uids)})" if uids else "1 = 0"
        if name == "modality":
            codes = [self.builder._modality(s, c) for s, c in clause.values]
            return (f"EXISTS (SELECT 1 FROM series se WHERE se.study_pk = s.pk AND se.modality "
                    f"IN ({', '.join(bind(c) for c in codes)}))")
        # started: the StudyDate as the day it covers (imaging.py _date_ok does the same)
        alternatives = " OR ".join(
            X.DATE_SQL[prefix].format(lo=bind(q_lo), hi=bind(q_hi)).replace("i.lo", _LO)
            .replace("i.hi", _HI) for prefix, q_lo, q_hi in clause.values)
        return f"(length(s.study_date) = 8 AND ({alternatives}))"

    @staticmethod
    def _order(keys: tuple, bind: X.Binds) -> str:
        """The keys, then storage order. ``started`` sorts by StudyDate then StudyTime (the
        resource shows the date only), so the first study of a day comes first."""
        terms = []
        for key in keys:
            direction = "DESC" if key.descending else "ASC"
            for expr in _sort_exprs(key):
                terms.append(f"{expr} {direction} NULLS LAST")
        return ", ".join(terms + ["s.pk"])


def _sort_exprs(key: C.SortKey) -> tuple[str, ...]:
    name = key.param.name
    if name == "started":
        return "NULLIF(s.study_date, '')", "NULLIF(s.study_time, '')"
    if name in ("patient", "subject"):
        return ("p.patient_id",)
    if name == "modality":
        agg = "MAX" if key.descending else "MIN"
        return (f"(SELECT {agg}(se.modality) FROM series se WHERE se.study_pk = s.pk)",)
    return ("s.study_uid",)  # _id, identifier


def _dicom(tags: tuple[str, ...], values: tuple) -> dict:
    """Index columns in the DICOM JSON form the archive path reads (matching.py _items)."""
    out: dict[str, dict] = {}
    for tag, value in zip(tags, values, strict=True):
        if value is None or value == "":
            out[tag] = {}
        elif tag == "00080061":
            out[tag] = {"Value": str(value).split("\\")}
        else:
            out[tag] = {"Value": [value]}
    return out


def refuse_joins(request: S.SearchRequest) -> None:
    """Without the embedded archive's tables (a remote PACS) nothing can be joined."""
    for clause in request.clauses:
        if isinstance(clause, (C.Chain, C.Has)):
            raise not_supported(400, f"{clause.key}: chained and _has parameters on ImagingStudy "
                                     "need the embedded archive; this gateway serves a remote "
                                     "PACS (C-FIND cannot join clinical data)", clause.key)
