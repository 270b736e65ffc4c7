"""FHIR API throughput under 8 concurrent clients, beside a trivial Flask route (issue 7 target:
``Observation?patient=X&category=laboratory`` and ``Patient?_id=X`` >= 0.5x the trivial route).

    python bench/fhir_bench.py [--patients 20] [--seconds 10] [--rounds 2] [--workers N] [--data DIR]

Synthesises and imports the cohort (small images: only the clinical side matters), serves it
with gunicorn (gateway/serving/gunicorn_conf.py, production worker count unless --workers) next to
``bench/trivial_app.py`` under the same config, and drives each workload with wrk -t2 -c8
(rotating over the patients, each wrk thread from its own place) or, without wrk, 8 Python
threads. The machine is shared: each workload runs right after the trivial route, rounds
alternate, and the table shows medians of the ratio to that neighbour, plus the servers' CPU
time per request (steadier than req/s).
"first time" rows rotate over more distinct searches than a worker keeps plans/results for
(gateway/fhir/plan.py, cache.py), so every request is parsed, planned and run in SQL.
Prints a table and one JSON line. Numbers on a shared 2-core machine are indicative only.
"""
from __future__ import annotations

import argparse
import json
import os
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

from gateway.archive.local import open_local  # noqa: E402
from gateway.ingest.importer import run_import  # noqa: E402
from gateway.ingest.clinical import import_clinical  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.fhir.plan import MAX_PLANS  # noqa: E402
from tests.support.procs import GatewayServer, start_gateway  # noqa: E402

CONNECTIONS = 8
TRIVIAL = "trivial Flask route (bench/trivial_app.py)"
LUA = """
paths = {%s}
i = 0
local threads = 0
setup = function(thread) thread:set("offset", threads * 7919); threads = threads + 1 end
init = function(args) i = (offset or 0) %% #paths end
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


def workloads(pids: list[str]) -> dict[str, list[str]]:
    """name -> paths; the "first time" rows vary _count so that no plan or result is reused."""
    labs = [f"/fhir/Observation?patient={p}&category=laboratory" for p in pids]
    one = [f"/fhir/Patient?_id={p}" for p in pids]
    counts = range(1, 2 * MAX_PLANS // max(1, len(pids)) + 2)
    return {
        TRIVIAL: ["/healthz"],
        "gateway /healthz": ["/healthz"],
        "Observation?patient=X&category=laboratory": labs,
        "Patient?_id=X": one,
        "  Observation..., first time (nothing kept)": [f"{p}&_count={c}" for c in counts for p in labs],
        "  Patient?_id=X, first time (nothing kept)": [f"{p}&_count={c}" for c in counts for p in one],
        "Patient?name=": [f"/fhir/Patient?name={p[-4:]}" for p in pids],
        "Patient/X/$everything": [f"/fhir/Patient/{p}/$everything" for p in pids],
    }


def cpu_seconds(server: GatewayServer) -> float:
    """User + system CPU of the gunicorn master and its workers (one process group)."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == server.proc.pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def with_wrk(url: str, paths: list[str], seconds: int, work: Path) -> dict:
    script = work / f"rotate{abs(hash(tuple(paths)))}.lua"
    script.write_text(LUA % ",".join(json.dumps(p) for p in paths))
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    n, duration, p50, p95, errors = map(int, line.split()[1:])
    return {"n": n, "rps": n / (duration / 1e6), "p50_ms": p50 / 1000, "p95_ms": p95 / 1000,
            "errors": errors}


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
    return {"n": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000, "p95_ms": cuts[18] * 1000,
            "errors": errors[0]}


def measure(server: GatewayServer, paths: list[str], seconds: int, work: Path) -> dict:
    """One timed run, with the server's CPU time per request."""
    before = cpu_seconds(server)
    result = with_wrk(server.url, paths, seconds, work) if shutil.which("wrk") \
        else with_threads(server.url, paths, seconds)
    result["cpu_us"] = (cpu_seconds(server) - before) / max(1, result["n"]) * 1e6
    return result


def run_rounds(servers: dict[str, GatewayServer], loads: dict[str, list[str]], rounds: int,
               seconds: int, work: Path) -> dict[str, list[dict]]:
    """Every workload right after the trivial route, ``rounds`` times; x_trivial per pair."""
    runs: dict[str, list[dict]] = {name: [] for name in loads}
    for r in range(rounds):
        for name, paths in loads.items():
            if name == TRIVIAL:
                continue
            baseline = measure(servers[TRIVIAL], loads[TRIVIAL], seconds, work)
            runs[TRIVIAL].append({**baseline, "x_trivial": 1.0})
            result = measure(servers["gateway"], paths, seconds, work)
            runs[name].append({**result, "x_trivial": result["rps"] / baseline["rps"]})
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{n.strip()[:24]} {v[-1]['x_trivial']:.2f}x" for n, v in runs.items() if n != TRIVIAL),
            file=sys.stderr, flush=True)
    return runs


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    keys = ("p50_ms", "p95_ms", "rps", "x_trivial", "cpu_us")
    out = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    for name, rs in runs.items():
        out[name]["x_min"] = min(r["x_trivial"] for r in rs)
        out[name]["errors"] = sum(r["errors"] for r in rs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="default: production (WORKERS)")
    ap.add_argument("--data", type=Path, help="an already loaded data dir (skip synth/import)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
    data = args.data or work / "data"
    pids = prepare(data, args.patients) if args.data is None else None
    servers = {"gateway": start_gateway(data, work / "logs", workers=args.workers)}
    try:
        servers[TRIVIAL] = start_gateway(work / "trivial-data", work / "logs", workers=args.workers,
                                         app="bench.trivial_app:app")
        if pids is None:
            bundle = requests.get(f"{servers['gateway'].url}/fhir/Patient?_count=1000&_elements=id",
                                  timeout=60).json()
            pids = [e["resource"]["id"] for e in bundle.get("entry", [])]
        loads = workloads(pids)
        for name, paths in loads.items():  # every path answers 200 before we time anything
            url = servers[TRIVIAL if name == TRIVIAL else "gateway"].url
            assert requests.get(url + paths[0], timeout=60).status_code == 200, paths[0]
        results = summarise(run_rounds(servers, loads, args.rounds, args.seconds, work))
    finally:
        for server in servers.values():
            server.stop()
    report(results, pids, args)
    if args.data is None:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict], pids: list[str], args: argparse.Namespace) -> None:
    print(f"{'workload':44} {'median ms':>10} {'p95 ms':>8} {'req/s':>9} {'x trivial':>10} "
          f"{'(min)':>6} {'CPU us/req':>11} {'errors':>7}")
    for name, r in results.items():
        print(f"{name:44} {r['p50_ms']:10.2f} {r['p95_ms']:8.2f} {r['rps']:9.0f} "
              f"{r['x_trivial']:10.2f} {r['x_min']:6.2f} {r['cpu_us']:11.0f} {r['errors']:7d}")
    print(json.dumps({"bench": "fhir", "patients": len(pids), "connections": CONNECTIONS,
                      "workers": args.workers or "production", "rounds": args.rounds,
                      "tool": "wrk" if shutil.which("wrk") else "threads",
                      **{name.strip(): {k: round(v, 3) for k, v in r.items()}
                         for name, r in results.items()}}))


if __name__ == "__main__":
    main()
