"""DICOMweb hot paths: latency (median, p95) and throughput of the gateway under gunicorn.

    python bench/dicomweb_bench.py [--patients 20] [--ct-slices 300] [--requests 200]
                                   [--workers 1] [--cohort DIR] [--keep]

Synthesises a cohort with one or more ``--ct-slices`` CTs, imports it, starts the
gateway (gunicorn, gateway/serving/gunicorn_conf.py) on a free loopback port and measures, with
one keep-alive client as OHIF would: the OHIF study-list query, QIDO by PatientID,
series of a study, the series metadata of the largest CT (cold, then warm), the whole
CT series retrieved as stored (MB/s), one frame, one rendered JPEG, a cached thumbnail.
Then it retrieves the CT series three times while sampling the worker's RSS and
reports the growth (target: < 50 MB, the series never sits in memory).
Prints a table and one JSON line. Numbers are indicative on a shared 2-core machine.
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
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.archive.local import open_local
from gateway.ingest.importer import run_import
from gateway.config import Settings
from tests.support.procs import start_gateway

OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
BROWSER = {"Accept-Encoding": "gzip, deflate, br"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn: Callable[[], int], n: int) -> list[float]:
    """Milliseconds per call; every call must answer 200."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        status = fn()
        out.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    return out


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pids(master: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return pids


class Target:
    """UIDs of the things measured, found through QIDO like a viewer would."""

    def __init__(self, s: requests.Session, root: str) -> None:
        series = s.get(f"{root}/series", params={"Modality": "CT"}).json()
        biggest = max(series, key=lambda r: r["00201209"]["Value"][0])
        self.study = biggest["0020000D"]["Value"][0]
        self.series = biggest["0020000E"]["Value"][0]
        self.slices = biggest["00201209"]["Value"][0]
        inst = s.get(f"{root}/studies/{self.study}/series/{self.series}/instances").json()
        sop = sorted(inst, key=lambda r: r["00200013"]["Value"][0])[len(inst) // 2]
        self.series_url = f"{root}/studies/{self.study}/series/{self.series}"
        self.instance_url = f"{self.series_url}/instances/{sop['00080018']['Value'][0]}"
        first = s.get(f"{root}/studies", params={"limit": 1}).json()[0]
        self.patient = first["00100020"]["Value"][0]


def retrieve_series(s: requests.Session, url: str) -> tuple[int, int]:
    """Stream the whole series, counting bytes (the client never holds it either)."""
    size = 0
    with s.get(url, headers={"Accept": AS_STORED}, stream=True) as r:
        for chunk in r.iter_content(1 << 20):
            size += len(chunk)
        return r.status_code, size


def latency_rows(s: requests.Session, root: str, t: Target,
                 n: int) -> list[tuple[str, list[float]]]:
    ohif = {"limit": "101", "offset": "0", "fuzzymatching": "false",
            "includefield": "00081030,00080060"}
    meta = f"{t.series_url}/metadata"
    cold = timed(lambda: s.get(meta, headers=BROWSER).status_code, 1)
    return [
        ("study search (OHIF list)", timed(lambda: s.get(f"{root}/studies", params=ohif,
                                                        headers=BROWSER).status_code, n)),
        ("QIDO by PatientID", timed(lambda: s.get(f"{root}/studies", params={
            "PatientID": t.patient}).status_code, n)),
        ("series of a study", timed(
            lambda: s.get(f"{root}/studies/{t.study}/series").status_code, n)),
        (f"series metadata {t.slices} slices, cold", cold),
        (f"series metadata {t.slices} slices, warm gzip", timed(
            lambda: s.get(meta, headers=BROWSER).status_code, max(20, n // 4))),
        (f"series metadata {t.slices} slices, warm identity", timed(
            lambda: s.get(meta, headers={"Accept-Encoding": "identity"}).status_code,
            max(20, n // 4))),
        ("single frame (OHIF)", timed(lambda: s.get(f"{t.instance_url}/frames/1", headers={
            "Accept": OHIF_FRAMES, **BROWSER}).status_code, n)),
        ("rendered JPEG", timed(lambda: s.get(f"{t.instance_url}/rendered", headers={
            "Accept": "image/jpeg"}).status_code, n)),
        ("thumbnail (cached)", timed(lambda: s.get(f"{t.instance_url}/thumbnail", headers={
            "Accept": "image/jpeg"}).status_code, n)),
    ]


def throughput(s: requests.Session, t: Target, runs: int = 5) -> tuple[list[float], int]:
    rates, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        status, size = retrieve_series(s, t.series_url)
        assert status == 200
        rates.append(size / 1e6 / (time.perf_counter() - t0))
    return rates, size


def curl_throughput(t: Target, runs: int = 5) -> list[float]:
    """The same retrieve with curl (a C client), so Python on the client side is not the
    bottleneck being measured; empty when curl is not installed."""
    if shutil.which("curl") is None:
        return []
    rates = []
    for _ in range(runs):
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}",
                              "-H", f"Accept: {AS_STORED}", t.series_url],
                             capture_output=True, text=True, check=True).stdout
        rates.append(float(out) / 1e6)
    return rates


def rss_growth(s: requests.Session, t: Target, master: int) -> tuple[float, float]:
    """Peak worker RSS growth (MB) over three whole-series retrieves, and the baseline."""
    pids = worker_pids(master)
    assert pids, "no gunicorn worker found"
    s.get(f"{t.instance_url}/frames/1", headers={"Accept": OHIF_FRAMES})
    base = {p: rss_kb(p) for p in pids}
    peak = dict(base)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for p in pids:
                peak[p] = max(peak[p], rss_kb(p))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(3):
        retrieve_series(s, t.series_url)
    stop.set()
    sampler.join()
    growth = max(peak[p] - base[p] for p in pids) / 1024
    return growth, max(base.values()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--ct-slices", type=int, default=300)
    ap.add_argument("--ct-fraction", type=float, default=0.1)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cohort", type=Path, help="existing cohort dir (skip synth)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dicomweb-bench-"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def prepare(args: argparse.Namespace, work: Path) -> Path:
    cohort = args.cohort
    if cohort is None:
        from gateway.synth import write_cohort
        cohort = write_cohort(work / "cohort", patients=args.patients, seed=1,
                              ct_slices=args.ct_slices, ct_fraction=args.ct_fraction).root
    data = work / "data"
    report = run_import(open_local(Settings().replace(data_dir=data)), [cohort], workers=2,
                        progress=False)
    assert report.new and not report.rejected, report.summary()
    return data


def run(args: argparse.Namespace, work: Path) -> None:
    data = prepare(args, work)
    server = start_gateway(data, work / "logs", workers=args.workers)
    try:
        root = f"{server.url}/dicomweb"
        with requests.Session() as s:
            target = Target(s, root)
            rows = latency_rows(s, root, target, args.requests)
            rates, size = throughput(s, target)
            curl_rates = curl_throughput(target)
            growth, base = rss_growth(s, target, server.proc.pid)
    finally:
        server.stop()
    report(rows, (rates, curl_rates), size, growth, base, target, args)


def report(rows, all_rates, size, growth, base, target, args) -> None:
    result: dict[str, object] = {"bench": "dicomweb", "workers": args.workers,
                                 "ct_slices": target.slices}
    print(f"{'operation':44} {'n':>5} {'median ms':>10} {'p95 ms':>9}")
    for name, values in rows:
        med, p95 = statistics.median(values), percentile(values, 95)
        print(f"{name:44} {len(values):5d} {med:10.2f} {p95:9.2f}")
        key = name.split(" (")[0].replace(" ", "_").replace(",", "")
        result[key] = {"median_ms": round(med, 2), "p95_ms": round(p95, 2)}
    rates, curl_rates = all_rates
    mbps = statistics.median(rates)
    print(f"{'whole CT series as stored (requests)':44} {len(rates):5d} {size / 1e6:9.1f} MB "
          f"{mbps:8.1f} MB/s (min {min(rates):.1f}, max {max(rates):.1f})")
    if curl_rates:
        result["series_mb_per_s_curl"] = round(statistics.median(curl_rates), 1)
        print(f"{'whole CT series as stored (curl)':44} {len(curl_rates):5d} {size / 1e6:9.1f} MB "
              f"{statistics.median(curl_rates):8.1f} MB/s (min {min(curl_rates):.1f}, "
              f"max {max(curl_rates):.1f})")
    print(f"{'worker RSS growth, 3 series retrieves':44} {'':5} {growth:9.1f} MB "
          f"(baseline {base:.0f} MB; target < 50 MB)")
    result.update(series_mb=round(size / 1e6, 1), series_mb_per_s=round(mbps, 1),
                  rss_growth_mb=round(growth, 1), rss_baseline_mb=round(base, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
