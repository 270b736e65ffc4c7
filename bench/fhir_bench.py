"""FHIR API latency and throughput under 8 concurrent clients, beside a trivial Flask route.

    python bench/fhir_bench.py [--patients 105] [--seconds 10] [--workers 2] [--data DIR]

Synthesises and imports the cohort (small images: only the clinical side matters), serves it
with gunicorn (deploy/gunicorn.conf.py) and drives each workload with wrk (8 connections,
rotating over the patients) or, without wrk, 8 Python threads. Reports median/p95 latency and
requests/s per workload, and the ratio to /healthz (a trivial route under the same gunicorn,
timed right before each workload).
Prints a table and one JSON line. Numbers on a shared 2-core machine are indicative only.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.archive import open_local  # noqa: E402
from gateway.archive.importer import import_clinical, run_import  # noqa: E402
from gateway.config import Settings  # noqa: E402
from tests.support.procs import start_gateway  # noqa: E402

CONNECTIONS = 8
LUA = """
paths = {%s}
i = 0
request = function() i = i %% #paths + 1; return wrk.format("GET", paths[i]) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def prepare(data: Path, patients: int) -> list[str]:
    from gateway.synth import write_cohort
    cohort = write_cohort(data.parent / "cohort", patients=patients, seed=1, ct_slices=4, xr_size=64)
    archive = open_local(Settings().replace(data_dir=data))
    run_import(archive, [cohort.root], workers=2, progress=False)
    import_clinical(archive, cohort.xlsx)
    with archive.index.engine.connect() as conn:
        from sqlalchemy import text
        return [r[0] for r in conn.execute(text("SELECT id FROM fhir_resources WHERE type='Patient'"))]


def with_wrk(url: str, paths: list[str], seconds: int, work: Path) -> dict:
    script = work / "rotate.lua"
    script.write_text(LUA % ",".join(json.dumps(p) for p in paths))
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    n, duration, p50, p95, errors = map(int, line.split()[1:])
    return {"rps": n / (duration / 1e6), "p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "errors": errors}


def with_threads(url: str, paths: list[str], seconds: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        session, i = requests.Session(), offset
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            ok = session.get(url + paths[i % len(paths)], timeout=60).status_code == 200
            latencies.append(time.perf_counter() - t0)
            errors[0] += not ok
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CONNECTIONS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cuts = statistics.quantiles(latencies, n=20)
    return {"rps": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": cuts[18] * 1000, "errors": errors[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=105)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, help="an already loaded data dir (skip synth/import)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
    data = args.data or work / "data"
    pids = prepare(data, args.patients) if args.data is None else None
    server = start_gateway(data, work / "logs", workers=args.workers)
    try:
        if pids is None:
            bundle = requests.get(f"{server.url}/fhir/Patient?_count=1000&_elements=id", timeout=60).json()
            pids = [e["resource"]["id"] for e in bundle.get("entry", [])]
        workloads = {
            "trivial route /healthz": ["/healthz"],
            "Observation?patient=X&category=laboratory":
                [f"/fhir/Observation?patient={p}&category=laboratory" for p in pids],
            "Patient?_id=X": [f"/fhir/Patient?_id={p}" for p in pids],
            "Patient?name=": [f"/fhir/Patient?name={p[-4:]}" for p in pids],
            "Patient/X/$everything": [f"/fhir/Patient/{p}/$everything" for p in pids],
        }
        run = (lambda paths: with_wrk(server.url, paths, args.seconds, work)) if shutil.which("wrk") \
            else (lambda paths: with_threads(server.url, paths, args.seconds))
        for paths in workloads.values():  # every path answers 200 before we time anything
            assert requests.get(server.url + paths[0], timeout=60).status_code == 200, paths[0]
        # The machine is shared: time the trivial route right before each workload and
        # report the ratio to that neighbour, so drifting background load cancels out.
        results = {}
        for name, paths in workloads.items():
            baseline = run(workloads["trivial route /healthz"]) if name != "trivial route /healthz" else None
            results[name] = run(paths)
            results[name]["x_trivial"] = results[name]["rps"] / baseline["rps"] if baseline else 1.0
    finally:
        server.stop()
    print(f"{'workload':44} {'median ms':>10} {'p95 ms':>8} {'req/s':>9} {'x trivial':>10} {'errors':>7}")
    for name, r in results.items():
        print(f"{name:44} {r['p50_ms']:10.2f} {r['p95_ms']:8.2f} {r['rps']:9.0f} "
              f"{r['x_trivial']:10.2f} {r['errors']:7d}")
    print(json.dumps({"bench": "fhir", "patients": len(pids), "connections": CONNECTIONS,
                      "workers": args.workers, "tool": "wrk" if shutil.which("wrk") else "threads",
                      **{name: {k: round(v, 3) for k, v in r.items()} for name, r in results.items()}}))
    if args.data is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
