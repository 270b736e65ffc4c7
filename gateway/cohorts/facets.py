"""Facet counts over the clinical data and the images together, for the home page's builder.

``GET /cohorts/facets?sex=female&condition=44054006&modality=CT&...`` answers, in one SQL
statement, the studies, patients and series the selection matches and, for every facet, how
many studies each of its values would match with the other facets' selections kept (so a
chosen value never hides its siblings; a value the selection excludes is listed with 0). Facets: ``collection``, ``sex`` (Patient.gender),
``age`` (bands of the age Observation, LOINC 30525-0), ``race`` (US Core race, OMB code),
``condition`` (each SNOMED CT Condition code; several are ANDed), ``icu`` (an ICU Encounter,
SNOMED CT 305351004: yes/no), ``mortality`` (Patient.deceased: true/false), ``modality`` (a
series of it) and ``description`` (StudyDescription). Values within one facet are ORed.

The collection of a study is read once from its first instance (TCIA's stamp, book.py
``collection_of``) into ``cohort_study_collections``; the count statement also says how many
studies are not there yet, and only then are they added and the statement run again.
"""
from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .book import CohortBook, collection_of
from .facetsql import FACETS, Selection, statement
from .nbia import plain
from .schema import collections_t, pg_insert


def counts(book: CohortBook, args: Mapping[str, list[str]]) -> dict[str, Any]:
    selection = Selection(args)
    sql = text(statement(selection))
    book.ready()
    with book.engine.begin() as conn:
        rows = conn.execute(sql, selection.params).all()
        if any(r[0] == "_unlabelled" and r[2] for r in rows):  # new studies: once, then again
            top_up_collections(conn)
            rows = conn.execute(sql, selection.params).all()
    out: dict[str, Any] = {"selection": {k: v for k, v in selection.values.items() if v},
                           "studies": 0, "patients": 0, "series": 0,
                           "facets": {k: [] for k in FACETS}}
    for facet, value, studies, patients in rows:
        if facet == "_total":
            out["studies"], out["patients"] = int(studies), int(patients)
        elif facet == "_series":
            out["series"] = int(studies)
        elif facet == "_unlabelled":
            continue
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
        insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert()
        conn.execute(insert(collections_t).on_conflict_do_nothing(), [
            {"study_uid": uid, "collection": collection_of(blob)} for uid, blob in missing])


def holdings(book: CohortBook) -> dict[str, Any]:
    """What the archive holds: per collection (with its licence and citation) and per type."""
    book.ready()
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
