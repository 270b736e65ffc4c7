"""Import throughput: instances/s and MB/s importing the synthetic COVID-19-AR cohort.

    python bench/import_bench.py [--patients 105] [--workers 1 2] [--cohort DIR] [--keep]
                                 [--ratio-slices 640] [--ratio-repeats 3]

Synthesises the cohort once (timed too), then imports it into a fresh data dir per
worker count, and once more to time the idempotent re-import (all duplicates).
Then the syntax ratio: one CT series of the COVID-19-AR twin (the one closest to
``--ratio-slices`` images, 512 x 512) written twice, Implicit VR Little Endian (the real
collection's syntax) and Explicit VR Little Endian, same pixels and attributes, each imported
into a fresh data dir, alternately ``--ratio-repeats`` times; the best rate of each counts.
Prints a table and one JSON line (``implicit_explicit_ratio``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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
    ap.add_argument("--ratio-slices", type=int, default=640,
                    help="CT images for the Implicit/Explicit ratio (0: skip it)")
    ap.add_argument("--ratio-repeats", type=int, default=3)
    ap.add_argument("--only-ratio", action="store_true", help="skip the cohort import")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="import-bench-"))
    rows, result = [], {"bench": "import", "patients": args.patients}
    if not args.only_ratio:
        _cohort_rows(args, work, rows, result)
    if args.ratio_slices:
        _syntax_ratio(work, args.ratio_slices, max(args.workers), args.ratio_repeats, rows,
                      result)
    _print(rows)
    print(json.dumps(result))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _cohort_rows(args: argparse.Namespace, work: Path, rows: list, result: dict) -> None:
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


def _ratio_series(work: Path, slices: int) -> dict[str, tuple[Path, int]]:
    """The twin's CT series closest to ``slices`` images, rendered in both syntaxes."""
    from dataclasses import replace

    from gateway.synth.dicom import job_for
    from gateway.synth.model import EXPLICIT_VR_LE, IMPLICIT_VR_LE
    from gateway.synth.render import render_study
    from gateway.synth.skeleton import read_skeleton
    from gateway.synth.twin import build_twin
    cohort = build_twin(read_skeleton("COVID-19-AR"), full=True)
    p, s, x = min(((p, s, x) for p in cohort.patients for s in p.studies for x in s.series
                   if x.kind == "axial"), key=lambda t: abs(len(t[2].instance_uids) - slices))
    out = {}
    for name, syntax in (("implicit", IMPLICIT_VR_LE), ("explicit", EXPLICIT_VR_LE)):
        study = replace(s, series=(replace(x, syntax=syntax),))
        root = work / f"ratio-{name}" / cohort.marks.collection
        count, size = render_study(job_for(root, cohort.seed, cohort.xr_size, cohort.ct_size,
                                           p, study, cohort.marks))
        out[name] = (root, size)
    return out


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the import pool's workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _syntax_ratio(work: Path, slices: int, workers: int, repeats: int, rows: list,
                  result: dict) -> None:
    """Best wall-clock rate and best CPU rate of each syntax: on a machine shared with other
    work the wall-clock rate swings by 3x between runs, the CPU cost per instance does not."""
    series = _ratio_series(work, slices)
    best: dict[str, float] = {}
    for k in range(repeats):
        for name, (root, size) in series.items():
            archive = open_local(Settings().replace(data_dir=work / f"data-{name}-{k}"))
            t0, c0 = time.perf_counter(), _cpu()
            report = run_import(archive, [root], workers=workers, progress=False)
            dt, cpu = time.perf_counter() - t0, _cpu() - c0
            assert report.new and not report.rejected, report.summary()
            rows.append((f"import {name} VR LE CT, {workers} worker(s)", report.new, size, dt))
            best[name] = max(best.get(name, 0.0), report.new / dt)
            best[name + "_cpu"] = max(best.get(name + "_cpu", 0.0), report.new / cpu)
            shutil.rmtree(work / f"data-{name}-{k}", ignore_errors=True)
    result["ratio_slices"] = report.new
    for key in ("implicit", "explicit"):
        result[f"{key}_inst_per_s"] = round(best[key], 1)
        result[f"{key}_inst_per_cpu_s"] = round(best[key + "_cpu"], 1)
    result["implicit_explicit_ratio"] = round(best["implicit"] / best["explicit"], 3)
    result["implicit_explicit_cpu_ratio"] = round(best["implicit_cpu"] / best["explicit_cpu"],
                                                  3)


def _print(rows: list[tuple[str, int, int, float]]) -> None:
    print(f"{'step':42} {'instances':>9} {'MB':>8} {'seconds':>8} {'inst/s':>8} {'MB/s':>8}")
    for name, n, nbytes, dt in rows:
        print(f"{name:42} {n:9d} {nbytes / 1e6:8.0f} {dt:8.1f} {n / dt:8.0f} {nbytes / 1e6 / dt:8.0f}")


if __name__ == "__main__":
    main()
