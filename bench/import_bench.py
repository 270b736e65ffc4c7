"""Import throughput: instances/s and MB/s importing the synthetic COVID-19-AR cohort.

    python bench/import_bench.py [--patients 105] [--workers 1 2] [--cohort DIR] [--keep]

Synthesises the cohort once (timed too), then imports it into a fresh data dir per
worker count, and once more to time the idempotent re-import (all duplicates).
Prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.archive.local import open_local  # noqa: E402
from gateway.ingest.importer import run_import  # noqa: E402
from gateway.ingest.clinical import import_clinical  # noqa: E402
from gateway.config import Settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=105)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--cohort", type=Path, help="existing cohort dir (skip synth)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="import-bench-"))
    rows, result = [], {"bench": "import", "patients": args.patients}
    cohort = args.cohort
    if cohort is None:
        from gateway.synth import write_cohort
        t0 = time.perf_counter()
        summary = write_cohort(work / "cohort", patients=args.patients)
        dt = time.perf_counter() - t0
        cohort = summary.root
        rows.append(("synth", summary.instances, summary.bytes, dt))
        result["synth_s"] = round(dt, 2)
    files = [p for p in Path(cohort).rglob("*.dcm")]
    total_bytes = sum(p.stat().st_size for p in files)
    for workers in args.workers:
        data = work / f"data-w{workers}"
        archive = open_local(Settings().replace(data_dir=data))
        # warm page cache: the cohort was just written (or read by a previous row)
        t0 = time.perf_counter()
        report = run_import(archive, [cohort], workers=workers, progress=False)
        dt = time.perf_counter() - t0
        assert report.new == len(files) and not report.rejected, report.summary()
        rows.append((f"import, {workers} worker(s)", report.new, total_bytes, dt))
        result[f"import_w{workers}_inst_per_s"] = round(report.new / dt, 1)
        result[f"import_w{workers}_mb_per_s"] = round(total_bytes / 1e6 / dt, 1)
        t0 = time.perf_counter()
        again = run_import(archive, [cohort], workers=workers, progress=False)
        dt = time.perf_counter() - t0
        assert again.duplicate == len(files)
        rows.append((f"re-import (duplicates), {workers} worker(s)", again.duplicate, total_bytes, dt))
        xlsx = Path(cohort).parent / "COVID_19_AR_ClinicalCorrelates.xlsx"
        if xlsx.exists():
            import_clinical(archive, xlsx)
    _print(rows)
    print(json.dumps(result))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _print(rows: list[tuple[str, int, int, float]]) -> None:
    print(f"{'step':42} {'instances':>9} {'MB':>8} {'seconds':>8} {'inst/s':>8} {'MB/s':>8}")
    for name, n, nbytes, dt in rows:
        print(f"{name:42} {n:9d} {nbytes / 1e6:8.0f} {dt:8.1f} {n / dt:8.0f} {nbytes / 1e6 / dt:8.0f}")


if __name__ == "__main__":
    main()
