"""Run every fuzzer (tests/fuzz) for a while and report executions/s and crashes.

    python -m bench.fuzz --minutes 10            # every target, 10 minutes each, in turn
    python -m bench.fuzz --minutes 2 --targets dicomjson,qido --jobs 2

Prints a table and one JSON line (``FUZZ {...}``). Crash inputs and their tracebacks are
kept under ``--out`` (default ./test-artifacts/fuzz/<target>/); turn each into a named
regression test before fixing it. Exits 1 when any target crashed.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fuzz import runner


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="per target")
    ap.add_argument("--targets", default=",".join(runner.TARGETS),
                    help="comma list (default: all): " + ", ".join(runner.TARGETS))
    ap.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (one core each)")
    ap.add_argument("--seed", type=int, default=None, help="libFuzzer -seed (default: random)")
    ap.add_argument("--out", type=Path, default=Path("test-artifacts/fuzz"))
    args = ap.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in runner.TARGETS]
    if unknown:
        ap.error(f"unknown target(s): {', '.join(unknown)}")

    def one(target: str) -> runner.FuzzRun:
        work = (args.out / target).resolve()
        return runner.fuzz(target, args.minutes * 60, work, seed=args.seed)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(one, targets))
    for run in runs:
        for crash in run.distinct:
            (args.out / run.target).mkdir(parents=True, exist_ok=True)
            name = crash.input.name if crash.input else "unknown"
            (args.out / run.target / f"{name}.log").write_text(crash.log)
    report(runs)
    return 1 if any(run.crashes for run in runs) else 0


def report(runs: list[runner.FuzzRun]) -> None:
    print(f"{'target':<14}{'seconds':>9}{'executions':>13}{'exec/s':>9}{'crashes':>9}"
          f"{'distinct':>10}")
    for run in runs:
        print(f"{run.target:<14}{run.seconds:>9.0f}{run.executions:>13}{run.per_second:>9.0f}"
              f"{len(run.crashes):>9}{len(run.distinct):>10}")
        for crash in run.distinct:
            print(f"    {crash.signature}  input: {crash.input}")
    print("FUZZ " + json.dumps({run.target: {
        "seconds": round(run.seconds, 1), "executions": run.executions,
        "exec_per_s": round(run.per_second, 1), "crashes": len(run.crashes),
        "distinct": [c.signature for c in run.distinct]} for run in runs}, sort_keys=True))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
