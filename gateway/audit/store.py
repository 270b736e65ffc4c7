"""AuditEvents in the index database (SQLAlchemy Core): append-only, searchable.

One row per AuditEvent with the columns `/fhir/AuditEvent` searches on (patient, date,
outcome, action, type) and the JSON body as written; agents (user `sub`, `client_id`, AE
titles) in a child table, since an event has several. Rows are only ever inserted: on
SQLite and PostgreSQL a trigger refuses UPDATE and DELETE, so the trail cannot be edited
through the application's connection either.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    event,
    exists,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

from ..dbschema import create_all

metadata = MetaData()

audit_events = Table(
    "audit_events", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("recorded", String(24), nullable=False),  # FHIR instant, UTC, ms: sorts as text
    Column("action", String(1), nullable=False),
    Column("type_code", String(64), nullable=False),
    Column("outcome", Integer, nullable=False),
    Column("patient", String(64)),
    Column("body", Text, nullable=False),
    Index("ix_audit_events_patient_recorded", "patient", "recorded"),
    Index("ix_audit_events_recorded", "recorded"),
)

audit_agents = Table(
    "audit_event_agents", metadata,
    Column("event_id", String(64), ForeignKey("audit_events.id"), nullable=False),
    Column("agent", String(256), nullable=False),
    Index("ix_audit_event_agents_agent", "agent", "event_id"),
)

_APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS {t}_append_only_{op} BEFORE {op.upper()} ON {t} "
        "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
        for t in ("audit_events", "audit_event_agents") for op in ("update", "delete")],
    "postgresql": [
        ("CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$ BEGIN "
         "RAISE EXCEPTION 'the audit trail is append-only'; END $$ LANGUAGE plpgsql"),
        *[f"CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
          "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
          for t in ("audit_events", "audit_event_agents")]],
}


@event.listens_for(audit_agents, "after_create")
def _triggers(target: Table, connection: Connection, **_: object) -> None:
    for statement in _APPEND_ONLY.get(connection.dialect.name, []):
        connection.execute(text(statement))


@dataclass(frozen=True)
class AuditQuery:
    """`/fhir/AuditEvent` search parameters the store answers (FHIR R4 names)."""

    patient: str | None = None
    agent: str | None = None
    since: dt.datetime | None = None      # date=ge...
    until: dt.datetime | None = None      # date=lt...
    outcome: Sequence[int] = ()
    limit: int = 100
    offset: int = 0


class AuditStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self) -> None:
        """The tables (two workers may start at once: ``dbschema.create_all``)."""
        create_all(self.engine, metadata)

    def append(self, events: Iterable[dict]) -> int:
        """Insert AuditEvent resources (as `gateway.audit.fhir.to_fhir` makes them), in one
        transaction with two executemany statements."""
        resources = list(events)
        if not resources:
            return 0
        rows = [_row(r) for r in resources]
        agents = [{"event_id": r["id"], "agent": a} for r in resources for a in sorted(_agents(r))]
        with self.engine.begin() as conn:
            conn.execute(insert(audit_events), rows)
            if agents:
                conn.execute(insert(audit_agents), agents)
        return len(rows)

    def search(self, query: AuditQuery) -> list[dict]:
        """Matching AuditEvents, newest first."""
        stmt = (select(audit_events.c.body).where(*_conditions(query))
                .order_by(audit_events.c.recorded.desc(), audit_events.c.pk.desc())
                .limit(query.limit).offset(query.offset))
        with self.engine.connect() as conn:
            return [orjson.loads(body) for body in conn.execute(stmt).scalars()]

    def count(self, query: AuditQuery) -> int:
        stmt = select(func.count()).select_from(audit_events).where(*_conditions(query))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())


def _conditions(q: AuditQuery) -> list:
    c = audit_events.c
    conditions = []
    if q.patient is not None:
        conditions.append(c.patient == q.patient.removeprefix("Patient/"))
    if q.agent is not None:
        conditions.append(exists().where(and_(audit_agents.c.event_id == c.id,
                                              audit_agents.c.agent == q.agent)))
    if q.since is not None:
        conditions.append(c.recorded >= _utc(q.since))
    if q.until is not None:
        conditions.append(c.recorded < _utc(q.until))
    if q.outcome:
        conditions.append(c.outcome.in_(list(q.outcome)))
    return conditions


def _row(resource: dict) -> dict:
    patients = [e["what"]["reference"].removeprefix("Patient/")
                for e in resource.get("entity", [])
                if e.get("role", {}).get("code") == "1" and "reference" in e.get("what", {})]
    recorded = dt.datetime.fromisoformat(resource["recorded"])  # 3.11 reads the trailing Z
    return {"id": resource["id"], "recorded": _utc(recorded), "action": resource["action"],
            "type_code": resource["type"]["code"], "outcome": int(resource["outcome"]),
            "patient": patients[0] if patients else None,
            "body": orjson.dumps(resource).decode()}


def _agents(resource: dict) -> set[str]:
    """Searchable agent ids: every agent's who.identifier.value (sub, client_id, AE title)
    and AE titles from altId."""
    out = set()
    for agent in resource.get("agent", []):
        value = agent.get("who", {}).get("identifier", {}).get("value")
        if value:
            out.add(str(value)[:256])
        alt = agent.get("altId", "")
        if alt.startswith("AETITLES="):
            out.update(a for a in alt.removeprefix("AETITLES=").split("\\") if a)
    return out


def _utc(moment: dt.datetime) -> str:
    """The one text form of a moment the column holds and compares (UTC, milliseconds)."""
    if moment.tzinfo is None:
        raise ValueError("audit search bounds must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
