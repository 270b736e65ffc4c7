"""What every harness shares: instrumentation when run as a fuzzer, and the entry point.

A harness module defines ``check(data: bytes) -> None``: it feeds ``data`` to one codec and
raises only when the codec breaks its contract (an exception the codec does not document,
an invalid result, a differential mismatch). Replaying a corpus file is ``check(bytes)``;
fuzzing is ``python -m tests.fuzz.<target> [libFuzzer flags] CORPUS...``.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, ContextManager


def instrumented(module_name: str) -> ContextManager:
    """Instrument ``gateway`` modules imported inside this block, but only in a fuzzer
    process (run as ``__main__``): replay under pytest imports them plainly."""
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris
    return atheris.instrument_imports(include=["gateway"])


def main(check: Callable[[bytes], None]) -> None:
    """libFuzzer's loop (flags and corpus directories from the command line)."""
    import atheris
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def ints(data: bytes, count: int) -> tuple[list[int], bytes]:
    """The first ``count`` bytes as small integers, and the rest: a plain header that seed
    files can be written by hand for (no FuzzedDataProvider framing)."""
    head = list(data[:count]) + [0] * max(0, count - len(data))
    return head, data[count:]
