"""The AuditEvent store on SQLite (and PostgreSQL): append-only, searchable by patient,
agent, date and outcome; the trail writes one row per patient and never raises."""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from gateway.archive.local.index import make_engine
from gateway.audit.events import (
    Action,
    Actor,
    Alert,
    AuditRecord,
    Face,
    Outcome,
    Server,
    Study,
)
from gateway.audit.fhir import to_fhir
from gateway.audit.store import AuditQuery, AuditStore
from gateway.audit.trail import AuditTrail

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
ALICE = Actor(sub="alice", client_id="viewer", issuer="http://idp", jti="j1", address="10.0.0.1")
BOB = Actor(sub="bob", client_id="ehr-app", address="10.0.0.2")
MODALITY = Actor(calling_ae="CT_SCANNER", address="10.0.0.9")
SERVER = Server("http://gw.test", "127.0.0.1", ae_title="TCIAGW")


def rec(action: Action, who: Actor, minutes: int, **kw) -> AuditRecord:
    return AuditRecord(action, kw.pop("face", Face.DICOMWEB), who=who, server=SERVER,
                       recorded=T0 + dt.timedelta(minutes=minutes), request_id=f"r{minutes}", **kw)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore(make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}"))
    s.create()
    return s


def fill(store: AuditStore) -> None:
    trail = AuditTrail(store)
    trail.record(rec(Action.QUERY, ALICE, 0, query=b"limit=10", patients=("P1", "P2", "P3")))
    trail.record(rec(Action.READ, BOB, 10, studies=(Study("1.2.3", "P2"),)))
    trail.record(rec(Action.CREATE, MODALITY, 20, face=Face.DIMSE, studies=(Study("9.9", "P3"),)))
    trail.record(rec(Action.SECURITY_ALERT, BOB, 30, outcome=Outcome.MINOR_FAILURE,
                     alert=Alert.RESTRICTED_FUNCTION, attempted=Action.READ, patients=("P1",),
                     description="outside the compartment"))
    assert trail.flush()
    assert trail.stats.stored == 6 and trail.stats.store_failures == 0


def ids(events: list[dict]) -> list[str]:
    return [e["entity"][0]["what"]["identifier"]["value"] for e in events]  # the request id


def test_search_by_patient_agent_date_outcome(store: AuditStore) -> None:
    fill(store)
    assert store.count(AuditQuery()) == 6
    assert ids(store.search(AuditQuery(patient="P1"))) == ["r30", "r0"]  # newest first
    assert ids(store.search(AuditQuery(patient="Patient/P2"))) == ["r10", "r0"]
    assert ids(store.search(AuditQuery(agent="bob"))) == ["r30", "r10"]
    assert ids(store.search(AuditQuery(agent="viewer"))) == ["r0", "r0", "r0"]
    assert ids(store.search(AuditQuery(agent="CT_SCANNER"))) == ["r20"]
    assert ids(store.search(AuditQuery(agent="TCIAGW"))) == ["r30", "r20", "r10", "r0", "r0", "r0"]
    window = AuditQuery(since=T0 + dt.timedelta(minutes=5), until=T0 + dt.timedelta(minutes=25))
    assert ids(store.search(window)) == ["r20", "r10"]
    denied = store.search(AuditQuery(outcome=[4, 8, 12]))
    assert ids(denied) == ["r30"] and denied[0]["type"]["code"] == "110113"
    assert store.count(AuditQuery(patient="P3", agent="alice")) == 1
    assert ids(store.search(AuditQuery(limit=2, offset=1))) == ["r20", "r10"]
    with pytest.raises(ValueError, match="timezone-aware"):
        store.search(AuditQuery(since=dt.datetime(2024, 1, 1)))


def test_the_body_is_kept_as_written(store: AuditStore) -> None:
    [event] = to_fhir(rec(Action.READ, ALICE, 0, studies=(Study("1.2.3", "P1"),)))
    store.append([event])
    assert store.search(AuditQuery(patient="P1")) == [event]


def test_the_trail_is_append_only(store: AuditStore) -> None:
    fill(store)
    with store.engine.connect() as conn:
        for statement in ("UPDATE audit_events SET outcome = 0",
                          "DELETE FROM audit_events", "DELETE FROM audit_event_agents",
                          "UPDATE audit_event_agents SET agent = 'x'"):
            with pytest.raises(DatabaseError, match="append-only"):
                conn.execute(text(statement))
            conn.rollback()
    assert store.count(AuditQuery()) == 6


def test_append_only_on_postgresql(postgres) -> None:
    store = AuditStore(make_engine(postgres.create_database("audit" + uuid.uuid4().hex[:8])))
    store.create()
    fill(store)
    assert ids(store.search(AuditQuery(patient="P1", agent="bob"))) == ["r30"]
    with store.engine.connect() as conn, pytest.raises(DatabaseError, match="append-only"):
        conn.execute(text("DELETE FROM audit_events"))
    assert store.count(AuditQuery()) == 6


def test_a_broken_store_never_fails_the_request(tmp_path: Path, caplog) -> None:
    store = AuditStore(make_engine(f"sqlite:///{tmp_path / 'never-created.sqlite'}"))
    trail = AuditTrail(store)  # no tables: every insert fails
    with caplog.at_level(logging.ERROR, logger="gateway.audit.trail"):
        trail.record(rec(Action.QUERY, ALICE, 0, patients=("P1", "P2")))  # returns at once
        assert trail.flush()
    assert trail.stats.store_failures == 2 and trail.stats.stored == 0
    assert "2 AuditEvents not stored (requests r0)" in caplog.text


def test_a_full_queue_drops_counts_and_logs(store: AuditStore, caplog) -> None:
    trail = AuditTrail(store, queue_size=2)
    with caplog.at_level(logging.ERROR, logger="gateway.audit.trail"):
        accepted = [trail.record(rec(Action.QUERY, ALICE, i, patients=("P1",)))
                    for i in range(50)]
        assert trail.flush()
    assert accepted.count(False) == trail.stats.dropped >= 40  # 2 queued, a batch in hand
    assert store.count(AuditQuery()) == trail.stats.stored == 50 - trail.stats.dropped
    assert "audit queue full (2)" in caplog.text


def test_an_encoder_failure_is_counted_and_the_rest_is_stored(store: AuditStore,
                                                              caplog) -> None:
    trail = AuditTrail(store)
    broken = rec(Action.SECURITY_ALERT, BOB, 1, alert="not-an-alert-code")  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="gateway.audit.trail"):
        trail.record(broken)
        trail.record(rec(Action.READ, ALICE, 2, studies=(Study("1.2", "P1"),)))
        assert trail.flush()
    assert (trail.stats.encode_failures, trail.stats.stored) == (1, 1)
    assert "cannot encode dimse security-alert" not in caplog.text
    assert "cannot encode dicomweb security-alert (request r1)" in caplog.text


def test_two_workers_creating_the_tables_at_once_both_start(tmp_path: Path) -> None:
    """The CI failure of this stop: two gunicorn workers on one SQLite file, the second's
    CREATE TABLE after the first's ("table audit_events already exists"): the worker exited
    with 3. The other worker's CREATE is made to land between this one's look and its own."""
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    mine, other = make_engine(url), make_engine(url)
    raced: list[str] = []

    @event.listens_for(mine, "before_cursor_execute")
    def _other_worker_first(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE") and not raced:
            raced.append(statement)
            AuditStore(other).create()  # the other worker wins the race

    store = AuditStore(mine)
    store.create()
    assert raced, "the race was not staged"
    store.append(to_fhir(rec(Action.QUERY, ALICE, 1, patients=("P1",))))
    with mine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 1

