"""The cohort tables, beside the archive's in the index database (SQLAlchemy Core; SQLite and
PostgreSQL), as gateway/archive/local/schema.py defines its own.

A cohort freezes the answer to a question: its series, in download order, with the patient,
study and collection each belonged to when it was made (``cohort_series``). ``instance_crc``
keeps the CRC-32 of stored bytes by their SHA-256, so a ZIP resumed past an entry never reads
that entry's file again (zipstream.py).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import (BigInteger, Column, Index, Integer, MetaData, String, Table, Text)
from sqlalchemy.engine import Engine

from ..dbschema import create_all

metadata = MetaData()

cohorts_t = Table(
    "cohorts", metadata,
    Column("id", String(36), primary_key=True),
    Column("created", String(40), nullable=False),   # ISO 8601 UTC, milliseconds
    Column("kind", String(16), nullable=False),      # fhir | qido | explicit | group
    Column("query", Text, nullable=False),           # what it was made from (JSON)
    Column("name", String(255)),
    Column("num_patients", Integer, nullable=False),
    Column("num_studies", Integer, nullable=False),
    Column("num_series", Integer, nullable=False),
    Column("num_instances", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
)

series_t = Table(
    "cohort_series", metadata,
    Column("cohort_id", String(36), nullable=False),
    Column("position", Integer, nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("collection", String(64), nullable=False),
    Column("modality", String(16)),
    Column("num_instances", Integer, nullable=False),
)
Index("ix_cohort_series", series_t.c.cohort_id, series_t.c.position, unique=True)

patients_t = Table(  # its patients: those of its series, and Patients matched without images
    "cohort_patients", metadata,
    Column("cohort_id", String(36), nullable=False),
    Column("position", Integer, nullable=False),
    Column("patient_id", String(64), nullable=False),
)
Index("ix_cohort_patients", patients_t.c.cohort_id, patients_t.c.position, unique=True)

collections_t = Table(  # a study's collection, read once from its first instance (facets.py)
    "cohort_study_collections", metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("collection", String(64), nullable=False),
)

crc_t = Table(
    "instance_crc", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("crc32", BigInteger, nullable=False),
)


def ensure(engine: Engine) -> None:
    """Create the tables; two workers starting at once may race (the second sees them)."""
    create_all(engine, metadata)


def pg_insert() -> Any:
    """PostgreSQL's INSERT ... ON CONFLICT, imported on first use (SQLite nodes never load it)."""
    from sqlalchemy.dialects.postgresql import insert
    return insert
