"""Fuzz the fast Part 10 reader and the store-time parse around it (PS3.10, PS3.18 F.2).

Input: a (mutated) Part 10 file, Explicit or Implicit VR Little Endian. Contract:
``dicomjson.read`` returns or declines with one of the errors ingest falls back to
pydicom on; ``ingest.parse_file`` returns a record or raises IngestError (a STOW/C-STORE
failure reason), never anything else. Differential: wherever the fast reader returns and
pydicom reads the same bytes, both give the same DICOM JSON, meta and pixel data ranges
(other bulk data is read from the file when asked for).
"""
from __future__ import annotations

import os
import struct
import tempfile
import warnings
from pathlib import Path

import orjson

from tests.fuzz._harness import instrumented, main

with instrumented(__name__):
    from gateway.archive.local import dicomjson, ingest

# What ingest._parse treats as "the fast reader declines" (then pydicom has the last word).
DECLINES = (dicomjson.Unsupported, dicomjson.Truncated, OSError, struct.error, UnicodeDecodeError)
PLACEHOLDER = "{BULK}/"
_PATH: list[Path] = []


def scratch() -> Path:
    """One scratch file per process: the readers take a path (they mmap it)."""
    if not _PATH:
        fd, name = tempfile.mkstemp(prefix="fuzz-dicomjson-", suffix=".dcm")
        os.close(fd)
        _PATH.append(Path(name))
    return _PATH[0]


def check(data: bytes) -> None:
    path = scratch()
    path.write_bytes(data)
    try:
        fast = dicomjson.read(path, lambda tag: PLACEHOLDER + tag)
    except DECLINES:
        fast = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ingest.parse_file(path, sha256="0" * 64, size=len(data))
        except ingest.IngestError as exc:
            assert exc.message and int(exc.reason), exc
        if fast is not None:
            _same_as_pydicom(fast, path, len(data))


def _same_as_pydicom(fast: dicomjson.Parsed, path: Path, size: int) -> None:
    try:
        slow = ingest._pydicom(path, size, PLACEHOLDER)
    except Exception:  # noqa: BLE001 - pydicom refuses these bytes: nothing to compare
        return
    fast_json = orjson.dumps(fast.doc, option=orjson.OPT_SORT_KEYS)
    slow_json = orjson.dumps(slow.doc, option=orjson.OPT_SORT_KEYS)
    assert fast_json == slow_json, _first_difference(fast.doc, slow.doc)
    given = lambda p: {k: v for k, v in p.meta.items() if v}  # noqa: E731 - missing is ""
    assert given(fast) == given(slow), (fast.meta, slow.meta)
    pixels = lambda p: {t: v for t, v in p.bulk.items() if int(t, 16) in dicomjson.PIXEL_TAGS}  # noqa: E731
    assert pixels(fast) == pixels(slow), (fast.bulk, slow.bulk)  # other bulk is read on demand
    assert fast.fragments == slow.fragments, (fast.fragments, slow.fragments)


def _first_difference(fast: dict, slow: dict) -> str:
    for tag in sorted(set(fast) | set(slow)):
        if orjson.dumps(fast.get(tag), option=orjson.OPT_SORT_KEYS) != \
                orjson.dumps(slow.get(tag), option=orjson.OPT_SORT_KEYS):
            return f"{tag}: fast {fast.get(tag)!r} != pydicom {slow.get(tag)!r}"
    return "documents differ"


if __name__ == "__main__":
    main(check)
