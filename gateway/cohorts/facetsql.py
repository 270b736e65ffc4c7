"""The SQL of the home page's facets (facets.py): the selection's predicates and the one
statement that counts studies, patients and series and every facet's values (see facets.py for
what each facet means). Plain SQL that SQLite and PostgreSQL both run."""
from __future__ import annotations

from typing import Any, Mapping

AGE = "http://loinc.org|30525-0"
ICU = "305351004"
SCT = "http://snomed.info/sct"
SCALAR = ("collection", "sex", "age", "race", "icu", "mortality", "description")
FACETS = (*SCALAR, "condition", "modality")
AGE_BANDS = (("0-17", 18), ("18-39", 40), ("40-64", 65), ("65-79", 80), ("80+", None))

_BAND = "CASE WHEN a.age IS NULL THEN 'unknown' " + " ".join(
    f"WHEN a.age < {hi} THEN '{name}'" for name, hi in AGE_BANDS if hi) + " ELSE '80+' END"
# Per patient once (grouped, then joined), never a correlated lookup per study: a planner may
# answer those with a scan of every index row of the parameter.
_BASE = (
    "WITH pv AS (SELECT r.id AS pid, "
    "MIN(CASE WHEN i.param = 'gender' THEN i.value END) AS sex, "
    "MIN(CASE WHEN i.param = 'race' THEN i.value END) AS race, "
    "MIN(CASE WHEN i.param = 'deceased' THEN i.value END) AS mortality "
    "FROM fhir_resources r JOIN fhir_index i ON i.res_pk = r.pk WHERE r.type = 'Patient' "
    "AND i.param IN ('gender', 'race', 'deceased') GROUP BY r.id), "
    "ag AS (SELECT r.patient_id AS pid, MAX(v.num) AS age FROM fhir_resources r "
    "JOIN fhir_index c ON c.res_pk = r.pk JOIN fhir_index v ON v.res_pk = r.pk "
    "WHERE r.type = 'Observation' AND c.param = 'code' AND c.system = 'http://loinc.org' "
    "AND c.value = '30525-0' AND v.param = 'value-quantity' GROUP BY r.patient_id), "
    "iu AS (SELECT DISTINCT r.patient_id AS pid FROM fhir_resources r JOIN fhir_index i "
    f"ON i.res_pk = r.pk WHERE r.type = 'Encounter' AND i.param = 'type' AND i.value = '{ICU}'), "
    "a AS (SELECT s.pk AS pk, p.patient_id AS pid, "
    "COALESCE(sc.collection, 'Unknown') AS collection, COALESCE(pv.sex, 'unknown') AS sex, "
    "COALESCE(pv.race, 'unknown') AS race, COALESCE(pv.mortality, 'unknown') AS mortality, "
    "ag.age AS age, CASE WHEN iu.pid IS NULL THEN 'no' ELSE 'yes' END AS icu, "
    "COALESCE(NULLIF(s.study_description, ''), '(none)') AS description "
    "FROM studies s JOIN patients p ON p.pk = s.patient_pk "
    "LEFT JOIN cohort_study_collections sc ON sc.study_uid = s.study_uid "
    "LEFT JOIN pv ON pv.pid = p.patient_id LEFT JOIN ag ON ag.pid = p.patient_id "
    "LEFT JOIN iu ON iu.pid = p.patient_id), "
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
    patients) rows, and how many studies have no collection recorded yet (facets.py)."""
    parts = [f"SELECT '_total', '', COUNT(*), COUNT(DISTINCT t.pid) FROM t "
             f"WHERE {selection.predicates()}",
             "SELECT '_series', '', COUNT(*), 0 FROM series se JOIN t ON t.pk = se.study_pk "
             f"WHERE {selection.predicates()}",
             "SELECT '_unlabelled', '', COUNT(*), 0 FROM studies s LEFT JOIN "
             "cohort_study_collections sc ON sc.study_uid = s.study_uid WHERE sc.study_uid IS NULL"]
    for facet in SCALAR:  # every value stays listed, with 0 when the selection excludes it
        column = _COLUMN.get(facet, "t." + facet)
        parts.append(_listed(facet, f"{column} AS v FROM t", selection.predicates(facet)))
    parts.append(_listed("modality", "m.modality AS v FROM t JOIN m ON m.pk = t.pk",
                         selection.predicates("modality")))
    parts.append(_listed("condition", "c.code AS v FROM t JOIN c ON c.pid = t.pid",
                         selection.predicates()))
    return _BASE + " UNION ALL ".join(parts)


def _listed(facet: str, source: str, where: str) -> str:
    """Each value of a facet (all of them, from ``source``: "<value> AS v FROM ...") with the
    studies and patients that meet ``where``: the filtered counts joined to the values."""
    return (f"SELECT '{facet}', va.v, COALESCE(n.studies, 0), COALESCE(n.patients, 0) FROM "
            f"(SELECT DISTINCT {source}) va LEFT JOIN (SELECT {source.split(' AS v', 1)[0]} AS v, "
            f"COUNT(DISTINCT t.pk) AS studies, COUNT(DISTINCT t.pid) AS patients "
            f"FROM {source.split(' FROM ', 1)[1]} WHERE {where} GROUP BY 1) n ON n.v = va.v")


def study_pks_sql(selection: Selection) -> str:
    """The selected studies' pks (a cohort made from facets: resolve.py)."""
    return _BASE + f"SELECT t.pk FROM t WHERE {selection.predicates()}"
