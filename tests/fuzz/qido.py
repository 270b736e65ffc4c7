"""Fuzz QIDO-RS query parsing and PS3.4 C.2.2.2 matching, down to the SQL it runs.

Input: byte 0 picks the mode. Even: a query string for one of the six QIDO-RS resources
(PS3.18 10.6.1), parsed, planned and run on an empty SQLite index; the same Query also
becomes a C-FIND identifier (the remote-PACS direction) that must encode. Odd: the rest
is one raw DA/TM/DT matching value (a range or a single value) for an indexed date or
time attribute. Contract: an answer, or InvalidQuery naming the attribute; never another
exception, and never SQL the database refuses.
"""
from __future__ import annotations

from urllib.parse import parse_qsl

from tests.fuzz._harness import instrumented, ints, main

with instrumented(__name__):
    from gateway.archive.local import matching
    from gateway.archive.attributes import ATTRIBUTES
    from gateway.archive.errors import InvalidQuery
    from gateway.archive.local.index import Index
    from gateway.archive.protocol import Level, Query, UidPath
    from gateway.dicomweb import qido
    from gateway.dimse.identifiers import find_identifier

from pydicom.filewriter import write_dataset  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402

RESOURCES = ((Level.STUDY, UidPath()), (Level.SERIES, UidPath()),
             (Level.SERIES, UidPath("1.2.3")), (Level.INSTANCE, UidPath()),
             (Level.INSTANCE, UidPath("1.2.3")), (Level.INSTANCE, UidPath("1.2.3", "1.2.3.4")))
RANGED = tuple(a for a in ATTRIBUTES if a.vr in ("DA", "TM", "DT"))
_INDEX: list[Index] = []


def index() -> Index:
    """One empty in-memory index per process (schema creation is the slow part)."""
    if not _INDEX:
        _INDEX.append(Index("sqlite://"))
    return _INDEX[0]


def check(data: bytes) -> None:
    (selector,), rest = ints(data, 1)
    text = rest.decode("utf-8", "replace")
    if selector % 2:
        attr = RANGED[(selector // 2) % len(RANGED)]
        query = Query(attr.level, {attr.keyword: text}, limit=10)
    else:
        level, where = RESOURCES[(selector // 2) % len(RESOURCES)]
        args = parse_qsl(text, keep_blank_values=True, errors="replace")
        try:
            query = qido.parse(level, args, where)
        except InvalidQuery as exc:
            assert exc.attribute is not None, f"InvalidQuery without an attribute: {exc}"
            return
        assert query.limit is not None and 0 <= query.limit <= qido.MAX_RESULTS
        assert query.offset >= 0
    _run(query)


def _run(query: Query) -> None:
    try:
        with index().engine.connect() as conn:
            result = matching.run(conn, query)
    except InvalidQuery as exc:
        assert exc.attribute is not None, f"InvalidQuery without an attribute: {exc}"
        return
    assert result.matches == [] and not result.truncated  # the index is empty
    try:  # the same Query to a remote PACS: an identifier that encodes, or InvalidQuery
        identifier = find_identifier(query)
    except InvalidQuery as exc:
        assert exc.attribute is not None, f"InvalidQuery without an attribute: {exc}"
        return
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, identifier)


if __name__ == "__main__":
    main(check)
