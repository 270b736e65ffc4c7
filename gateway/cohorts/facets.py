"""Facet counts over the clinical data and the images together, for the home page's builder.

``GET /cohorts/facets?sex=female&condition=44054006&modality=CT&...`` answers, in one SQL
statement, the studies, patients and series the selection matches and, for every facet, how
many studies each of its values would match with the other facets' selections kept (so a
chosen value never hides its siblings). Facets: ``collection``, ``sex`` (Patient.gender),
``age`` (bands of the age Observation, LOINC 30525-0), ``race`` (US Core race, OMB code),
``condition`` (each SNOMED CT Condition code; several are ANDed), ``icu`` (an ICU Encounter,
SNOMED CT 305351004: yes/no), ``mortality`` (Patient.deceased: true/false), ``modality`` (a
series of it) and ``description`` (StudyDescription). Values within one facet are ORed.

The collection of a study is read once from its first instance (TCIA's stamp, book.py
``collection_of``) into ``cohort_study_collections``, topped up before a count when studies
were added.
"""
from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .book import CohortBook, collection_of
from .nbia import plain
from .schema import collections_t

AGE = "http://loinc.org|30525-0"
ICU = "305351004"
SCT = "http://snomed.info/sct"
SCALAR = ("collection", "sex", "age", "race", "icu", "mortality", "description")
FACETS = (*SCALAR, "condition", "modality")
AGE_BANDS = (("0-17", 18), ("18-39", 40), ("40-64", 65), ("65-79", 80), ("80+", None))

def _patient_value(param: str) -> str:
    return ("(SELECT MIN(i.value) FROM fhir_resources r JOIN fhir_index i ON i.res_pk = r.pk "
            f"WHERE r.type = 'Patient' AND r.id = p.patient_id AND i.param = '{param}')")


_AGE_VALUE = (
    "(SELECT MAX(v.num) FROM fhir_resources r JOIN fhir_index v ON v.res_pk = r.pk "
    "JOIN fhir_index c ON c.res_pk = r.pk WHERE r.type = 'Observation' "
    "AND r.patient_id = p.patient_id AND v.param = 'value-quantity' AND c.param = 'code' "
    "AND c.system = 'http://loinc.org' AND c.value = '30525-0')")
_BAND = "CASE WHEN a.age IS NULL THEN 'unknown' " + " ".join(
    f"WHEN a.age < {hi} THEN '{name}'" for name, hi in AGE_BANDS if hi) + " ELSE '80+' END"
_BASE = (
    "WITH a AS (SELECT s.pk AS pk, p.patient_id AS pid, "
    "COALESCE(sc.collection, 'Unknown') AS collection, "
    f"COALESCE({_patient_value('gender')}, 'unknown') AS sex, "
    f"COALESCE({_patient_value('race')}, 'unknown') AS race, "
    f"COALESCE({_patient_value('deceased')}, 'unknown') AS mortality, {_AGE_VALUE} AS age, "
    "CASE WHEN EXISTS (SELECT 1 FROM fhir_resources r JOIN fhir_index i ON i.res_pk = r.pk "
    "WHERE r.type = 'Encounter' AND r.patient_id = p.patient_id AND i.param = 'type' "
    f"AND i.value = '{ICU}') THEN 'yes' ELSE 'no' END AS icu, "
    "COALESCE(NULLIF(s.study_description, ''), '(none)') AS description "
    "FROM studies s JOIN patients p ON p.pk = s.patient_pk "
    "LEFT JOIN cohort_study_collections sc ON sc.study_uid = s.study_uid), "
    f"t AS (SELECT a.*, {_BAND} AS age_band FROM a), "
    "m AS (SELECT DISTINCT se.study_pk AS pk, COALESCE(se.modality, 'OT') AS modality "
    "FROM series se), "
    "c AS (SELECT DISTINCT r.patient_id AS pid, i.value AS code FROM fhir_resources r "
    "JOIN fhir_index i ON i.res_pk = r.pk WHERE r.type = 'Condition' AND i.param = 'code' "
    f"AND i.system = '{SCT}') ")
_COLUMN = {"age": "t.age_band"}


class Selection:
    """The facet values chosen, and their SQL predicates over ``t`` (with binds)."""

    def __init__(self, args: Mapping[str, list[str]], style: str = "colon") -> None:
        """``style``: the driver's bind style ("colon" for text(), else psycopg's)."""
        self.values = {k: [v for v in args.get(k, []) if isinstance(v, str) and v]
                       for k in FACETS}
        self.params: dict[str, Any] = {}
        self.style = style

    def _bind(self, value: Any) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return f":{name}" if self.style == "colon" else f"%({name})s"

    def predicates(self, leave_out: str | None = None) -> str:
        parts = ["1 = 1"]
        for facet in FACETS:
            chosen = self.values[facet]
            if not chosen or facet == leave_out:
                continue
            binds = ", ".join(self._bind(v) for v in chosen)
            if facet == "modality":
                parts.append(f"EXISTS (SELECT 1 FROM m WHERE m.pk = t.pk AND m.modality IN "
                             f"({binds}))")
            elif facet == "condition":
                parts += [f"EXISTS (SELECT 1 FROM c WHERE c.pid = t.pid AND c.code = "
                          f"{self._bind(v)})" for v in chosen]
            else:
                parts.append(f"{_COLUMN.get(facet, 't.' + facet)} IN ({binds})")
        return " AND ".join(parts)


def statement(selection: Selection) -> str:
    """The one statement: totals, series and every facet's counts, as (facet, value, studies,
    patients) rows."""
    parts = [f"SELECT '_total', '', COUNT(*), COUNT(DISTINCT t.pid) FROM t "
             f"WHERE {selection.predicates()}",
             "SELECT '_series', '', COUNT(*), 0 FROM series se JOIN t ON t.pk = se.study_pk "
             f"WHERE {selection.predicates()}"]
    for facet in SCALAR:
        column = _COLUMN.get(facet, "t." + facet)
        parts.append(f"SELECT '{facet}', {column}, COUNT(*), COUNT(DISTINCT t.pid) FROM t "
                     f"WHERE {selection.predicates(facet)} GROUP BY {column}")
    parts.append("SELECT 'modality', m.modality, COUNT(DISTINCT t.pk), COUNT(DISTINCT t.pid) "
                 f"FROM t JOIN m ON m.pk = t.pk WHERE {selection.predicates('modality')} "
                 "GROUP BY m.modality")
    parts.append("SELECT 'condition', c.code, COUNT(DISTINCT t.pk), COUNT(DISTINCT t.pid) "
                 f"FROM t JOIN c ON c.pid = t.pid WHERE {selection.predicates()} "
                 "GROUP BY c.code")
    return _BASE + " UNION ALL ".join(parts)


def study_pks_sql(selection: Selection) -> str:
    """The selected studies' pks (a cohort made from facets: resolve.py)."""
    return _BASE + f"SELECT t.pk FROM t WHERE {selection.predicates()}"


def counts(book: CohortBook, args: Mapping[str, list[str]]) -> dict[str, Any]:
    selection = Selection(args)
    with book.engine.begin() as conn:
        top_up_collections(conn)
        rows = conn.execute(text(statement(selection)), selection.params).all()
    out: dict[str, Any] = {"selection": {k: v for k, v in selection.values.items() if v},
                           "studies": 0, "patients": 0, "series": 0,
                           "facets": {k: [] for k in FACETS}}
    for facet, value, studies, patients in rows:
        if facet == "_total":
            out["studies"], out["patients"] = int(studies), int(patients)
        elif facet == "_series":
            out["series"] = int(studies)
        else:
            out["facets"][facet].append({"value": value, "studies": int(studies),
                                         "patients": int(patients)})
    for values in out["facets"].values():
        values.sort(key=lambda v: (-v["studies"], str(v["value"])))
    out["facets"]["condition"] = [{**v, "display": book.condition_display(v["value"])}
                                  for v in out["facets"]["condition"]]
    return out


def top_up_collections(conn: Connection) -> None:
    """Record the collection of studies not seen before (each read once)."""
    missing = conn.execute(text(
        "SELECT s.study_uid, (SELECT i.metadata FROM series se JOIN instances i "
        "ON i.series_pk = se.pk WHERE se.study_pk = s.pk ORDER BY se.pk, i.pk LIMIT 1) "
        "FROM studies s LEFT JOIN cohort_study_collections sc ON sc.study_uid = s.study_uid "
        "WHERE sc.study_uid IS NULL")).all()
    if missing:  # two workers at once: the second one's rows are already there
        insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
        conn.execute(insert(collections_t).on_conflict_do_nothing(), [
            {"study_uid": uid, "collection": collection_of(blob)} for uid, blob in missing])


def holdings(book: CohortBook) -> dict[str, Any]:
    """What the archive holds: per collection (with its licence and citation) and per type."""
    with book.engine.begin() as conn:
        top_up_collections(conn)
        rows = conn.execute(text(
            "SELECT sc.collection, COUNT(DISTINCT s.patient_pk), COUNT(*), SUM(s.num_series), "
            "SUM(s.num_instances) FROM studies s JOIN cohort_study_collections sc "
            "ON sc.study_uid = s.study_uid GROUP BY sc.collection ORDER BY sc.collection")).all()
        types = conn.execute(text("SELECT type, COUNT(*) FROM fhir_resources GROUP BY type "
                                  "ORDER BY type")).all()
    collections = []
    for name, patients, studies, series, instances in rows:
        facts = book.licence(name)
        collections.append({
            "name": name, "patients": int(patients), "studies": int(studies),
            "series": int(series or 0), "instances": int(instances or 0),
            "licence": None if facts is None else {"name": facts.long_name,
                                                   "short": facts.short_name, "url": facts.url},
            "doi": None if facts is None else f"https://doi.org/{facts.doi}",
            "citation": None if facts is None else plain(facts.citation)})
    return {"collections": collections, "fhir": {t: int(n) for t, n in types}}
