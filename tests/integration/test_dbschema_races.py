"""Tables created by two workers at once (gateway/dbschema.py): the other worker's CREATE is
made to land between this one's look and its own, and the worker still starts."""
from __future__ import annotations

import logging
from pathlib import Path

from gateway.archive.local.index import make_engine


def test_two_workers_creating_the_index_at_once_both_start(tmp_path: Path, caplog) -> None:
    """The same race on the archive's own tables, on a data dir no import made yet: the
    worker starts with its schema ready, not with "index database not reachable"."""
    from sqlalchemy import event

    from gateway.archive.local.index import Index

    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    mine = make_engine(url)
    raced: list[str] = []

    @event.listens_for(mine, "before_cursor_execute")
    def _other_worker_first(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE") and not raced:
            raced.append(statement)
            Index(url)  # the other worker wins the race

    with caplog.at_level(logging.WARNING, logger="gateway.archive.local.index"):
        index = Index(url, engine=mine)
    assert raced, "the race was not staged"
    assert "not reachable" not in caplog.text
    index.ping()  # ready: every table is there


def test_every_table_set_survives_a_worker_creating_it_first(tmp_path: Path) -> None:
    """The same race for every set of tables a worker creates at start (the CI failure of
    this stop's next run: 'table pacs_cache_marks already exists' in a BACKEND=idc worker):
    all go through ``dbschema.create_all``, and a CREATE that loses looks again."""
    from sqlalchemy import event

    from gateway.archive.local import open_local
    from gateway.backends.pacs.sharedstate import SharedCacheState
    from gateway.config import Settings

    data = tmp_path / "data"
    archive = open_local(Settings().replace(data_dir=data))  # the archive's own tables first
    other = make_engine(f"sqlite:///{data / 'index.sqlite'}")
    engine = archive.index.engine
    raced: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _other_worker_first(conn, cursor, statement, *args) -> None:
        if "CREATE TABLE pacs_cache_marks" in statement and not raced:
            raced.append(statement)
            with other.begin() as c:
                c.exec_driver_sql(statement)  # the other worker wins the race

    state = SharedCacheState(archive, tmp_path / "locks")
    try:
        assert raced, "the race was not staged"
        assert state.complete("series", "1.2.3") is None  # the table is there and answers
    finally:
        state.close()
        archive.close()
