"""The clinical store's tables, beside the archive's in the index database.

One row per resource (``fhir_resources``: body bytes with meta, the patient it belongs to), one
row per searchable value (``fhir_index``: token system/code, normalised string, number, date
range), whole texts for text search (``fhir_text``), facts about the tables (``fhir_meta``), and
the clinical sheet's rows as imported (``clinical_rows``, rows.py).
"""
from __future__ import annotations

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text, UniqueConstraint)

metadata = MetaData()

resources_t = Table(
    "fhir_resources", metadata,
    Column("pk", Integer, primary_key=True),
    Column("type", String(40), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("patient_id", String(64)),
    Column("digest", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("type", "id", name="uq_fhir_resources_type_id"),
)
index_t = Table(
    "fhir_index", metadata,
    Column("pk", Integer, primary_key=True),
    Column("res_pk", Integer, ForeignKey("fhir_resources.pk"), nullable=False),
    Column("param", String(40), nullable=False),
    Column("system", String(255)),
    Column("value", String(255)),
    Column("num", Float),
    Column("lo", String(32)),
    Column("hi", String(32)),
)
text_t = Table(  # text search (_content): whole normalised texts, longer than an index value
    "fhir_text", metadata,
    Column("pk", Integer, primary_key=True),
    Column("res_pk", Integer, ForeignKey("fhir_resources.pk"), nullable=False),
    Column("param", String(40), nullable=False),
    Column("value", Text, nullable=False),
)
Index("ix_fhir_text_res", text_t.c.res_pk, text_t.c.param)
meta_t = Table(  # facts about the tables themselves (reindex.py: the index definitions' signature)
    "fhir_meta", metadata,
    Column("key", String(40), primary_key=True),
    Column("value", String(64), nullable=False),
)
Index("ix_fhir_resources_patient", resources_t.c.type, resources_t.c.patient_id, resources_t.c.pk)
Index("ix_fhir_index_value", index_t.c.param, index_t.c.value, index_t.c.res_pk)
Index("ix_fhir_index_res", index_t.c.res_pk, index_t.c.param)
Index("ix_fhir_index_num", index_t.c.param, index_t.c.num)
Index("ix_fhir_index_date", index_t.c.param, index_t.c.lo)
