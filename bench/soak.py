"""Soak: hours of a day's mixed traffic in minutes, then is anything lost, leaking or broken?

    python bench/soak.py [--clients 16] [--minutes 10] [--db sqlite|postgresql|both]
                         [--patients 20] [--warmup 60] [--interval 10] [--workers N] [--keep]

Synthesises a cohort (small matrices), imports it with ``tcia-gateway import`` (images and the
clinical sheet) into a fresh data dir per database (SQLite, or a PostgreSQL started in a temp
dir), serves it with gunicorn under gateway/serving/gunicorn_conf.py (production worker count unless
--workers) and runs ``--clients`` keep-alive clients back to back for ``--minutes``: OHIF's
study list, QIDO by PatientID, series of a study, series metadata, single frames, rendered
JPEG, thumbnails, WADO-URI (DICOM and JPEG), FHIR Patient / Observation?patient=&category= /
ImagingStudy?patient=, and STOW: new instances (new UIDs; 1-3 per body, chunked over 1 MB;
some sent twice at once on two connections) and duplicates (identical bytes, of instances
just sent or of the same few files from several clients at once: each must be 200). Every
answer is checked (status, type, counts; WADO-URI DICOM byte for byte).
See docs/reliability.md (Soak) for what is checked and the figures.

Every ``--interval`` s it samples the workers' RSS and the open descriptors of master and
workers from /proc. At the end of the warm-up (``--warmup`` s) and at the end, the clients
pause for a quiet sample (no request in flight, their connections open): growth is end
against warm-up. Afterwards ``tcia-gateway check`` must find nothing, and the index must hold
every acknowledged new instance.

Prints a table per database and one JSON line; exits 1 on any error, worker RSS growth
>= 10 %, more open descriptors (index connections apart: the pools open them lazily;
they are shown), a worker restart, a server-log traceback, or a check problem.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.soaklib import Gate, Recorder, Sample, Sampler, run_client, scan_log  # noqa: E402
from bench.soaktraffic import Instance, Traffic, scan_cohort  # noqa: E402
from tests.support.procs import REPO, GatewayServer, start_gateway  # noqa: E402

RSS_LIMIT = 10.0     # percent growth after warm-up
SETTLE = 3.0         # seconds of quiet before a quiet sample (lingering closes end in 2 s)
TIMEOUT = 60.0       # per request
CONFIRM = 2          # more quiet samples when the end one has more descriptors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--ct-slices", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds (default: 1 minute)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--workers", type=int, default=None, help="default: production (WORKERS)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    logs = REPO / "test-artifacts" / "soak"
    try:
        from gateway.synth import write_cohort
        cohort = write_cohort(work / "cohort", patients=args.patients, seed=1,
                              ct_slices=args.ct_slices, xr_size=256)
        instances = scan_cohort(cohort.root)
        dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
        runs = {db: soak_one(db, args, work, logs, cohort, instances) for db in dbs}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for db, run in runs.items():
        print_run(db, run)
    print(json.dumps({"bench": "soak", "clients": args.clients, "minutes": args.minutes,
                      "warmup_s": args.warmup, "workers": args.workers or "production",
                      "instances": len(instances), "runs": runs}))
    sys.exit(1 if any(run["failures"] for run in runs.values()) else 0)


def soak_one(db: str, args: argparse.Namespace, work: Path, logs: Path, cohort,
             instances: list[Instance]) -> dict:
    """Import, serve, drive, stop, check: one database."""
    pg = None
    env = {"GATEWAY_DATA_DIR": str(work / f"data-{db}"), "GATEWAY_LOG_LEVEL": "WARNING"}
    if db == "postgresql":
        from tests.support.postgres import start_postgres
        pg = start_postgres(logs)
        env["GATEWAY_DATABASE_URL"] = pg.create_database("soak")
    try:
        gateway_cli(env, "import", str(cohort.root), "--clinical", str(cohort.xlsx))
        server = start_gateway(Path(env["GATEWAY_DATA_DIR"]), logs, workers=args.workers,
                               env=env)
        try:
            run = drive(server, instances, args, pg.port if pg else None)
        finally:
            server.stop()
        run["server_log"] = scan_log(server.proc.log)
        run["check"] = check(env, len(instances) + run.pop("new_acknowledged"))
    finally:
        if pg is not None:
            pg.stop()
    run["failures"] = failures(run)
    return run


def gateway_cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    """``tcia-gateway ...`` (``python -m gateway``) on this checkout."""
    return subprocess.run([sys.executable, "-m", "gateway", *argv], cwd=REPO, check=True,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def fhir_patients(server: GatewayServer) -> list[str]:
    bundle = requests.get(f"{server.url}/fhir/Patient?_count=1000&_elements=id", timeout=60).json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def drive(server: GatewayServer, instances: list[Instance], args: argparse.Namespace,
          db_port: int | None) -> dict:
    """The clients for ``--minutes``, with a quiet sample after the warm-up and at the end."""
    traffic = Traffic(instances, fhir_patients(server))
    rec, gate, stop = Recorder(), Gate(args.clients), threading.Event()
    t0 = time.monotonic()
    sampler = Sampler(server.proc.pid, t0, args.interval, server.port, db_port)
    sampler.start()
    clients = [threading.Thread(target=run_client, name=f"client-{i}", daemon=True,
                                args=(i, server.url, traffic, rec, gate, stop, TIMEOUT))
               for i in range(args.clients)]
    for c in clients:
        c.start()
    end = t0 + args.minutes * 60
    time.sleep(max(0.0, min(args.warmup, end - t0 - 2 * SETTLE - 1)))
    base, paused = quiet_sample(gate, sampler)
    gate.resume()
    time.sleep(max(0.0, end - time.monotonic()))
    last, paused_end = quiet_sample(gate, sampler, against=base)
    stop.set()
    gate.resume()
    for c in clients:
        c.join(TIMEOUT + 10)
    sampler.stop()
    active = time.monotonic() - t0 - paused - paused_end
    return summarise(rec, sampler, base, last, active)


def quiet_sample(gate: Gate, sampler: Sampler, against: Sample | None = None
                 ) -> tuple[Sample, float]:
    """Pause the clients, let closes linger out, sample; (sample, seconds paused). When
    there are more descriptors than ``against``, look again a little later: a leak stays,
    something finishing in the background (a connection being opened) does not."""
    t = time.monotonic()
    if not gate.pause(TIMEOUT + 10):
        raise RuntimeError("clients did not pause: a request hangs")
    time.sleep(SETTLE)
    taken = sampler.take()
    for _ in range(CONFIRM):
        if against is None or taken.fds_but_db <= against.fds_but_db:
            break
        time.sleep(SETTLE)
        taken = sampler.take()
    return taken, time.monotonic() - t


def summarise(rec: Recorder, sampler: Sampler, base: Sample, last: Sample,
              active: float) -> dict:
    kinds = rec.table()
    total = sum(k["n"] for k in kinds.values())
    return {
        "requests": total, "errors": sum(rec.errors.values()), "rps": round(total / active, 1),
        "kinds": kinds, "first_errors": rec.first_errors, "server_closed": rec.reconnects,
        "new_acknowledged": len(rec.new_sops), "worker_restarts": sampler.restarts,
        "rss": growth(base.rss_sum, last.rss_sum) | {
            "max_base_mb": round(base.rss_max, 1), "max_end_mb": round(last.rss_max, 1),
            "max_growth_pct": pct(base.rss_max, last.rss_max)},
        "fds": {"base": base.fds_but_db, "end": last.fds_but_db,
                "growth": last.fds_but_db - base.fds_but_db,
                "growth_pct": pct(base.fds_but_db, last.fds_but_db),
                "db_base": base.fd_kinds["db"], "db_end": last.fd_kinds["db"],
                "db_max": max(s.fd_kinds["db"] for s in sampler.samples),
                "base_kinds": dict(base.fd_kinds),
                "end_kinds": dict(last.fd_kinds),
                "new_named": dict(last.files - base.files)},
        "samples": [s.brief() for s in sampler.samples],
    }


def growth(base: float, end: float) -> dict:
    return {"base_mb": round(base, 1), "end_mb": round(end, 1), "growth_pct": pct(base, end)}


def pct(base: float, end: float) -> float:
    return round((end - base) / base * 100, 1) if base else 0.0


def check(env: dict[str, str], expected: int) -> dict:
    """``tcia-gateway check`` on the stopped gateway's data dir, and what it counted."""
    done = subprocess.run([sys.executable, "-m", "gateway", "check"], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})
    out = done.stdout + done.stderr
    counted = re.search(r"checked (\d+) indexed instances", out)
    in_flight = re.search(r"(\d+) temp files in flight", out)
    problems = re.search(r"^(\d+) problems", out, re.MULTILINE)
    return {"exit": done.returncode, "instances": int(counted.group(1)) if counted else -1,
            "expected_instances": expected,
            "temp_files": int(in_flight.group(1)) if in_flight else -1,
            "problems": int(problems.group(1)) if problems else -1, "output": out.strip()[-2000:]}


def failures(run: dict) -> list[str]:
    out = []
    if run["errors"]:
        out.append(f"{run['errors']} errors")
    if run["rss"]["growth_pct"] >= RSS_LIMIT or run["rss"]["max_growth_pct"] >= RSS_LIMIT:
        out.append(f"worker RSS grew {run['rss']['growth_pct']} % (sum), "
                   f"{run['rss']['max_growth_pct']} % (max) after warm-up")
    if run["fds"]["growth"] > 0:
        out.append(f"open descriptors grew by {run['fds']['growth']}")
    if run["worker_restarts"]:
        out.append(f"worker restarts: {run['worker_restarts']}")
    if run["server_log"]["problems"]:
        out.append(f"{run['server_log']['problems']} problem lines in the server log")
    c = run["check"]
    if c["exit"] or c["problems"] != 0 or c["temp_files"] != 0:
        out.append(f"check: exit {c['exit']}, {c['problems']} problems, "
                   f"{c['temp_files']} temp files left")
    if c["instances"] != c["expected_instances"]:
        out.append(f"index holds {c['instances']} instances, expected "
                   f"{c['expected_instances']} (imported + acknowledged new)")
    return out


def print_run(db: str, run: dict) -> None:
    print(f"\n== {db}: {run['requests']} requests, {run['rps']} req/s, {run['errors']} errors")
    print(f"{'kind':24} {'n':>7} {'errors':>7} {'p50 ms':>9} {'p95 ms':>9}")
    for kind, k in run["kinds"].items():
        print(f"{kind:24} {k['n']:7d} {k['errors']:7d} {k['p50_ms']:9.1f} {k['p95_ms']:9.1f}")
    r, f, c = run["rss"], run["fds"], run["check"]
    print(f"worker RSS sum {r['base_mb']} -> {r['end_mb']} MB ({r['growth_pct']:+} %), "
          f"max {r['max_base_mb']} -> {r['max_end_mb']} MB ({r['max_growth_pct']:+} %)")
    print(f"open fds (master + workers, index connections apart) {f['base']} -> {f['end']} "
          f"({f['growth']:+}); index connections {f['db_base']} -> {f['db_end']} "
          f"(max {f['db_max']}); at the end {f['end_kinds']}"
          + (f"; new: {f['new_named']}" if f["new_named"] else ""))
    print("samples (t s: RSS sum/max MB, fds/of them index): " + ", ".join(
        f"{s['t']}: {s['rss_sum_mb']:.0f}/{s['rss_max_mb']:.0f}, {s['fds']}/{s['db']}"
        for s in run["samples"]))
    print(f"check: exit {c['exit']}, {c['problems']} problems, {c['instances']} instances "
          f"(expected {c['expected_instances']}), {c['temp_files']} temp files")
    print(f"server log {run['server_log']['log']}: {run['server_log']['problems']} problem lines")
    for line in run["server_log"]["first"]:
        print(f"  {line}")
    for e in run["first_errors"]:
        print(f"  ERROR {e['at']} {e['kind']}: {e['request'][:160]} -> {e['status']} "
              f"{e['why']} ({e['ms']} ms) {e['body']!r}")
    print(f"verdict: {'FAIL: ' + '; '.join(run['failures']) if run['failures'] else 'PASS'}")


if __name__ == "__main__":
    main()
