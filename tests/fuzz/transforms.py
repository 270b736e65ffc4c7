"""Fuzz the clinical-sheet value transforms (text in, typed value or Absent out).

Input: byte 0 picks the transform, byte 1 the cell's type (text, int, float, bool, None,
as openpyxl and the CSV reader give them) and the arguments (those the mappings use),
the rest is the cell. Contract, as the module says: nothing raises on bad input, and a
value that is not Absent has the transform's type, is finite and lies in ``range``.
"""
from __future__ import annotations

import math
import struct
from typing import Any

from tests.fuzz._harness import instrumented, ints, main

with instrumented(__name__):
    from gateway.mapping import transforms
    from gateway.mapping.transforms import Absent

NAMES = tuple(sorted(transforms.TRANSFORMS))
ARGS: tuple[dict, ...] = ({}, {"range": [0, 120]}, {"range": [-365, 3650]},
                          {"suffix": ["lbs", "lb"], "range": [40, 1000]},
                          {"suffix": ["%"], "range": [21, 100]}, {"length": 3}, {"length": 5})
TYPES = {"text": str, "upper": str, "yes_no": bool, "decimal": float, "integer": int,
         "height_inches": float, "digits": str, "accessions": list}


def cell_of(kind: int, raw: bytes) -> Any:
    if kind == 0:
        return raw.decode("utf-8", "replace")
    if kind == 1:
        return int.from_bytes(raw[:8], "little", signed=True)
    if kind == 2:
        return struct.unpack("<d", raw[:8].ljust(8, b"\0"))[0]
    if kind == 3:
        return bool(raw[:1] and raw[0] & 1)
    return None


def check(data: bytes) -> None:
    (name_sel, shape), rest = ints(data, 2)
    name = NAMES[name_sel % len(NAMES)]
    args = ARGS[(shape >> 3) % len(ARGS)]
    allowed = transforms.ARGUMENTS.get(name, frozenset())
    args = {k: v for k, v in args.items() if k in allowed}
    cell = cell_of(shape % 5 if shape % 8 < 5 else 0, rest)
    value = transforms.TRANSFORMS[name](cell, args)  # must not raise
    if isinstance(value, Absent):
        assert value.kind in ("blank", "unknown", "invalid", "out_of_range", "unmatched"), value
        return
    expected = TYPES[name]
    assert isinstance(value, expected) and (expected is not int or not isinstance(value, bool)), \
        (name, cell, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value), (name, cell, value)
        low, high = args.get("range", (None, None))
        assert (low is None or value >= low) and (high is None or value <= high), (cell, value)
    if name == "digits":
        assert value.isascii() and value.isdigit(), (cell, value)
        assert "length" not in args or len(value) == args["length"], (cell, value)


if __name__ == "__main__":
    main(check)
