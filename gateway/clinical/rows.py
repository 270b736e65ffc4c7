"""The clinical sheet's rows as imported (normalised headers), from which FHIR is rebuilt.

One row per sheet row, keyed by sheet, patient and the row's number among that patient's rows;
re-importing a sheet replaces exactly the rows of the patients it lists (idempotent).
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Column, Engine, Index, Integer, String, Table, Text, UniqueConstraint, select

from ..dbschema import create_all
from .schema import metadata

clinical_rows = Table(
    "clinical_rows", metadata,
    Column("pk", Integer, primary_key=True),
    Column("sheet", String(16), nullable=False),   # "patients" | "imaging"
    Column("patient_id", String(64), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("data", Text, nullable=False),          # JSON object, normalised headers
    Column("source", Text, nullable=False),        # file name it came from
    UniqueConstraint("sheet", "patient_id", "row_number", name="uq_clinical_row"),
)
Index("ix_clinical_patient", clinical_rows.c.patient_id)

Rows = dict[str, dict[str, list[tuple[int, dict]]]]


def replace(engine: Engine, sheet: str, source: str, rows: Iterable[tuple[str, int, dict]]) -> int:
    """Replace the rows of ``sheet`` of every patient present in ``rows``; how many."""
    items = list(rows)
    pids = sorted({pid for pid, _n, _d in items})
    create_all(engine, metadata, [clinical_rows])
    with engine.begin() as conn:
        if pids:
            conn.execute(clinical_rows.delete().where(
                (clinical_rows.c.sheet == sheet) & clinical_rows.c.patient_id.in_(pids)))
            conn.execute(clinical_rows.insert(), [
                {"sheet": sheet, "patient_id": pid, "row_number": n, "source": source,
                 "data": json.dumps(data, sort_keys=True)} for pid, n, data in items])
    return len(items)


def load(engine: Engine, patient_ids: Iterable[str] | None = None) -> Rows:
    """patient id → {"patients": [(n, row)], "imaging": [(n, row)]}."""
    stmt = select(clinical_rows.c.sheet, clinical_rows.c.patient_id, clinical_rows.c.row_number,
                  clinical_rows.c.data).order_by(clinical_rows.c.patient_id, clinical_rows.c.sheet,
                                                 clinical_rows.c.row_number)
    if patient_ids is not None:
        stmt = stmt.where(clinical_rows.c.patient_id.in_(list(patient_ids)))
    create_all(engine, metadata, [clinical_rows])
    out: Rows = defaultdict(lambda: {"patients": [], "imaging": []})
    with engine.connect() as conn:
        for sheet, pid, number, data in conn.execute(stmt):
            out[pid][sheet].append((number, json.loads(data)))
    return out
