"""Fuzz the multipart/related reader (RFC 2046 5.1, PS3.18 8.6.1.2) and its writer.

Input: byte 0 picks how many bytes each ``read`` returns, then the boundary up to the
first ``\\n``, then the body. Contract: the reader yields parts or raises MultipartError;
the parts do not depend on how the bytes arrive (one at a time or all at once); and what
the writer encodes from them reads back the same, at the length ``stream_length`` says.
"""
from __future__ import annotations

import io
import re

from tests.fuzz._harness import instrumented, ints, main

with instrumented(__name__):
    from gateway.dicomweb.multipart import (MultipartError, MultipartReader, encode,
                                            stream_length)

BCHARS = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")  # RFC 2046 5.1.1
STEPS = (1, 2, 3, 7, 64, 1000, 1 << 20)
Parsed = list[tuple[dict[str, str], bytes]]


def read_all(body: bytes, boundary: str, step: int) -> Parsed | None:
    """Every part, bodies joined; None when the reader says the body is malformed."""
    source = io.BytesIO(body)
    parts: Parsed = []
    try:
        for part in MultipartReader(lambda n: source.read(min(n, step)), boundary,
                                    chunk=1 << 16).parts():
            chunks = list(part.chunks())
            assert all(chunks), "the reader yielded an empty chunk"
            parts.append((dict(part.headers), b"".join(chunks)))
    except MultipartError:
        return None
    return parts


def check(data: bytes) -> None:
    (selector,), rest = ints(data, 1)
    raw_boundary, _, body = rest.partition(b"\n")
    boundary = raw_boundary.decode("latin-1")
    parts = read_all(body, boundary, STEPS[selector % len(STEPS)])
    whole = read_all(body, boundary, len(body) + 1)
    assert parts == whole, f"parts depend on how the bytes arrive: {parts!r} != {whole!r}"
    if parts is None:
        return
    delimiter = b"\r\n--" + raw_boundary
    for headers, payload in parts:
        assert delimiter not in payload, "a part body contains the delimiter"
        assert all(k == k.strip().lower() for k in headers), headers
    _round_trip(parts, boundary)


def _round_trip(parts: Parsed, boundary: str) -> None:
    types = [h.get("content-type") for h, _ in parts]
    if not BCHARS.match(boundary) or not all(t and t.isascii() and t.isprintable() for t in types):
        return  # the writer writes RFC 2046 boundaries and ASCII types
    messages = [(t, p) for t, (_h, p) in zip(types, parts)]
    encoded = encode(messages, boundary)
    assert len(encoded) == stream_length([(t, len(p)) for t, p in messages], boundary)
    again = read_all(encoded, boundary, 1 << 20)
    assert again == [({"content-type": t}, p) for t, p in messages], (again, messages)


if __name__ == "__main__":
    main(check)
