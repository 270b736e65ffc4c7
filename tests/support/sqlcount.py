"""Count the SQL statements a piece of code sends, whichever way it reaches the driver.

The FHIR search hot path runs its statement on the driver's own cursor (no SQLAlchemy
execution events), so statements are recorded at the driver: sqlite3's trace callback, and
psycopg's cursor class, installed on every connection the engines' pools hand out. Pool pings
(``SELECT 1``, psycopg's ``;``) are not counted. Statements run through SQLAlchemy are
recorded too (``before_cursor_execute``), so none escapes whichever path a change takes."""
from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine

PINGS = {"SELECT 1", "select 1", ";", ""}  # pool pre-ping (psycopg sends ";")


class StatementCounter:
    def __init__(self, *engines: Engine) -> None:
        self.statements: list[str] = []
        self._sqlalchemy_depth = 0
        counter = self

        class Recording(psycopg.Cursor):
            def execute(self, query: Any, params: Any = None, **kwargs: Any):  # type: ignore[override]
                counter._record(str(query))
                return super().execute(query, params, **kwargs)

        self._cursor = Recording
        for engine in engines:
            event.listen(engine, "checkout", self._on_checkout)
            event.listen(engine, "before_cursor_execute", self._on_sqlalchemy)
            event.listen(engine, "after_cursor_execute", self._after_sqlalchemy)

    def _record(self, sql: str) -> None:
        if self._sqlalchemy_depth == 0 and sql.strip() not in PINGS:
            self.statements.append(sql)

    def _on_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_conn, psycopg.Connection):
            dbapi_conn.cursor_factory = self._cursor
        else:
            dbapi_conn.set_trace_callback(self._record)

    def _on_sqlalchemy(self, _conn, _cursor, statement: str, *_args) -> None:
        self._record(statement)
        self._sqlalchemy_depth += 1  # the driver sees the same statement: count it once

    def _after_sqlalchemy(self, *_args) -> None:
        self._sqlalchemy_depth -= 1

    def take(self) -> list[str]:
        found, self.statements = self.statements, []
        return found
