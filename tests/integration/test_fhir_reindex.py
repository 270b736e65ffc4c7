"""Search rows made under older index definitions are rebuilt at start, once, even when two
processes start together: a new search parameter then finds resources stored before it."""
from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import delete, func, select, update

from gateway.archive.local.index import make_engine
from gateway.clinical import reindex
from gateway.fhir import search as S
from gateway.clinical.generation import Generation
from gateway.clinical.repository import Repository, index_t, meta_t, text_t
from gateway.fhir.sqlsearch import compile_search

WHITE = ("race", "urn:oid:2.16.840.1.113883.6.238|2106-3")
FINDINGS = ("_content", "opacities,consolidation,no acute")


def found(repository: Repository, kind: str, *args: tuple[str, str]) -> int:
    request = S.parse(kind, list(args) + [("_count", "0")])
    return repository.run(compile_search(request, repository.bind_style))[1]


def rows(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def age_the_index(engine) -> None:
    """What a database indexed before race, derived-from and _content looks like."""
    with engine.begin() as conn:
        conn.execute(delete(index_t).where(index_t.c.param.in_(["race", "derived-from", "part-of"])))
        conn.execute(delete(text_t))
        conn.execute(update(meta_t).values(value="older-definitions"))


def test_rows_from_older_definitions_are_rebuilt_at_start(data_copy: Path):
    url = f"sqlite:///{data_copy / 'index.sqlite'}"
    engine = make_engine(url)
    repository = Repository(engine)
    before = {q: found(repository, *q) for q in [("Patient", WHITE), ("DiagnosticReport", FINDINGS),
                                                  ("Observation", ("derived-from:missing", "false"))]}
    assert all(before.values()), before
    index_rows, text_rows = rows(engine, index_t), rows(engine, text_t)
    age_the_index(engine)
    assert found(repository, "Patient", WHITE) == 0  # stale: the rows are not there
    generation = Generation.of(engine)
    token = generation.token()

    again = Repository(make_engine(url))  # a process starting on the old database
    assert {q: found(again, *q) for q in before} == before
    assert (rows(engine, index_t), rows(engine, text_t)) == (index_rows, text_rows)
    assert generation.token() != token  # cached results of the old rows are dropped
    assert reindex.ensure_current(engine) is False  # once only


def test_two_processes_starting_together_rebuild_once(data_copy: Path):
    url = f"sqlite:///{data_copy / 'index.sqlite'}"
    engine = make_engine(url)
    Repository(engine)
    index_rows = rows(engine, index_t)
    age_the_index(engine)
    engines = [make_engine(url), make_engine(url)]
    results: list[bool] = []
    threads = [threading.Thread(target=lambda e=e: results.append(reindex.ensure_current(e)))
               for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [False, True]
    assert rows(engine, index_t) == index_rows  # not twice


def test_a_resource_moving_to_another_patient_takes_its_search_rows(tmp_path: Path):
    """Same id, new patient: the old row goes with its index and text rows (foreign keys on)."""
    repository = Repository(make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}"))
    report = {"resourceType": "DiagnosticReport", "id": "r1", "status": "final",
              "code": {"text": "XR CHEST"}, "conclusion": "Right lower lobe consolidation"}
    repository.replace_patients(["A"], [{**report, "subject": {"reference": "Patient/A"}}])
    counts = repository.replace_patients(["B"], [{**report, "subject": {"reference": "Patient/B"}}])
    assert counts["created"] == 1
    rows_b = repository.run(compile_search(S.parse("DiagnosticReport", [
        ("_content", "consolidation"), ("patient", "B")]), repository.bind_style))[0]
    assert [r[1] for r in rows_b] == ["r1"]
    assert found(repository, "DiagnosticReport", ("patient", "A")) == 0
    assert rows(repository.engine, text_t) == 2  # conclusion and code text, once
