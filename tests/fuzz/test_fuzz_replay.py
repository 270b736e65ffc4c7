"""CI for the fuzzers: every corpus file replays clean, then each fuzzer runs a few seconds
(a fixed seed and number of inputs, so the run is repeatable).

A failure names the input (kept under test-artifacts/fuzz/) and shows the traceback;
``python -m tests.fuzz.<target> <file>`` replays one input. Longer runs: ``bench/fuzz.py``.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from tests.fuzz import runner

SECONDS = float(os.environ.get("GATEWAY_FUZZ_SECONDS", "60"))  # a cap per target
SEED = 20240601  # fixed, and a fixed number of inputs: the same run on every machine
RUNS = {"multipart": 2500, "media": 4000, "qido": 10000, "dicomjson": 2000,  # ~5 s each here
        "frametable": 3000, "fhir_search": 25000, "transforms": 200000, "identifiers": 5000}


@pytest.mark.parametrize("target", list(runner.TARGETS))
def test_corpus_replays_clean(target: str) -> None:
    check = runner.harness(target)
    files = runner.corpus_files(target)
    assert len(files) >= 5, f"corpus of {target} has {len(files)} files"
    failures = []
    for path in files:
        try:
            check(path.read_bytes())
        except Exception:  # noqa: BLE001 - collected and reported with the file name
            failures.append(f"{path.name}:\n{traceback.format_exc(limit=-4)}")
    assert not failures, f"{len(failures)} of {len(files)} inputs break {target}:\n" + \
        "\n".join(failures[:3])


@pytest.mark.parametrize("target", list(runner.TARGETS))
def test_fuzzer_finds_no_crash(target: str, artifacts_dir: Path) -> None:
    work = artifacts_dir / "fuzz" / target
    run = runner.fuzz(target, SECONDS, work, seed=SEED, max_crashes=1, runs=RUNS[target])
    assert run.executions > 0, f"{target} fuzzer did not run"
    assert not run.crashes, (f"{target}: {run.crashes[0].signature}, input "
                             f"{run.crashes[0].input}\n{run.crashes[0].log[:3000]}")
