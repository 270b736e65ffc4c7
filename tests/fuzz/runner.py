"""Run the harnesses: replay their corpora in-process, or fuzz one in a libFuzzer subprocess.

Used by ``tests/fuzz/test_fuzz_replay.py`` (seconds per target) and ``bench/fuzz.py``
(minutes per target). A fuzzer process stops at its first crash; :func:`fuzz` records the
crash input and the traceback, and starts it again until the time is used up.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS = HERE / "corpus"
DICTS = HERE / "dicts"
# target → libFuzzer -max_len (bytes): long enough for the codec's limits to matter.
TARGETS: dict[str, int] = {
    "multipart": 20000, "media": 512, "qido": 1024, "dicomjson": 16384, "frametable": 2048,
    "fhir_search": 1024, "transforms": 256, "identifiers": 4096,
}
RSS_LIMIT_MB = 2048   # a codec that needs more than this for a small input is a crash
TIMEOUT_S = 10        # one input taking longer is a hang
_STATUS = re.compile(r"^#(\d+)\s", re.M)
_FINAL = re.compile(r"^stat::number_of_executed_units:\s*(\d+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def corpus_files(target: str) -> list[Path]:
    return sorted(p for p in (CORPUS / target).glob("*") if p.is_file())


def harness(target: str) -> Callable[[bytes], None]:
    return importlib.import_module(f"tests.fuzz.{target}").check


@dataclass
class Crash:
    kind: str          # crash | timeout | oom | leak
    input: Path | None
    log: str           # the traceback / libFuzzer report

    @property
    def signature(self) -> str:
        """Where it raised and the start of the message: a crash found again counts once."""
        frames = re.findall(r'File "([^"]+)", line (\d+)', self.log)
        where = f"{Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""
        error = re.search(r"^(\w+(?:Error|Exception|Warning)?): ?(.{0,40})", self.log, re.M)
        what = f"{error.group(1)}: {re.sub(r'[0-9A-F]{2,}|-?[0-9]+', 'N', error.group(2))}" \
            if error else ""
        return f"{self.kind} {where} {what}".strip()


@dataclass
class FuzzRun:
    target: str
    seconds: float = 0.0
    executions: int = 0
    crashes: list[Crash] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0

    @property
    def distinct(self) -> list[Crash]:
        seen: dict[str, Crash] = {}
        for crash in self.crashes:
            seen.setdefault(crash.signature, crash)
        return list(seen.values())


def fuzz(target: str, seconds: float, work: Path, *, seed: int | None = None,
         max_crashes: int = 20, runs: int | None = None) -> FuzzRun:
    """Fuzz ``target`` for ``seconds`` (new inputs go to ``work``, never into the corpus).
    With ``runs`` (and a seed) it stops after that many inputs: the same inputs on every
    machine, so a CI run is repeatable whatever the load."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus").mkdir(exist_ok=True)
    run = FuzzRun(target)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 1 and len(run.crashes) < max_crashes:
        started = time.monotonic()
        out = _one_process(target, int(left), work, seed, runs)
        run.seconds += time.monotonic() - started
        run.executions += _executions(out)
        crash = _crash(out)
        if crash is None:
            break  # ran to its time limit
        run.crashes.append(crash)
    return run


def _one_process(target: str, seconds: int, work: Path, seed: int | None,
                 runs: int | None = None) -> str:
    args = [sys.executable, "-m", f"tests.fuzz.{target}", f"-max_total_time={max(1, seconds)}",
            f"-max_len={TARGETS[target]}", f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-timeout={TIMEOUT_S}", "-print_final_stats=1", "-print_pcs=0",
            f"-artifact_prefix={work}/", str(work / "corpus"), str(CORPUS / target)]
    if (DICTS / f"{target}.dict").exists():
        args.insert(3, f"-dict={DICTS / f'{target}.dict'}")
    if seed is not None:
        args.insert(3, f"-seed={seed}")
    if runs is not None:
        args.insert(3, f"-runs={runs}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    if seed is not None:
        env["PYTHONHASHSEED"] = "0"  # set and dict orders too: a seeded run repeats exactly
    done = subprocess.run(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          timeout=seconds + 120)
    return done.stdout


def _executions(out: str) -> int:
    final = _FINAL.findall(out)
    if final:
        return int(final[-1])
    status = _STATUS.findall(out)
    return int(status[-1]) if status else 0


def _crash(out: str) -> Crash | None:
    artifact = _ARTIFACT.search(out)
    if artifact is None and "ERROR: libFuzzer" not in out and "Uncaught Python exception" not in out:
        return None
    path = Path(artifact.group(1)) if artifact else None
    name = path.name if path else ""
    kind = next((k for k in ("timeout", "oom", "leak", "slow-unit") if name.startswith(k)), "crash")
    start = out.find("=== Uncaught Python exception")
    log = out[start:] if start >= 0 else out[-4000:]
    return Crash(kind, path, log[:8000])
