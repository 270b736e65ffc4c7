"""The gateway and Orthanc side by side on the COVID-19-AR twin at its real shape.

    python bench/collections_bench.py [--patients N] [--all-patients] [--thin]
                                      [--xr-size PX] [--ct-size PX] [--requests N] [--keep]

Writes the twin (``synth --full``: every series with its real instance count; ``--patients``
samples that many patients, CT-bearing ones in proportion and at least one), then: import into the gateway (``tcia-gateway import``)
against DCMTK storescu into Orthanc (C-STORE ingest), both timed end to end; series metadata
of the largest series; the OHIF open of the largest CT study (QIDO of its series, every
series' metadata, the first frame of the first series), on one keep-alive connection as a
viewer; QIDO series of that study. Metadata and QIDO alternate between the two servers
after a warm-up. Prints a table (ratio = gateway / Orthanc) and one JSON line.

The issue's full run is ``--all-patients --xr-size 1024 --ct-size 512`` (31,935 instances,
17 GB; ~12 min here, Orthanc's ingest ~7 of them; ~55 GB of scratch space under TMPDIR for
the twin, the gateway's copy and Orthanc's); the default is a short run.
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
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.benchlib import Client  # noqa: E402
from gateway.synth import CohortSummary, write_twin  # noqa: E402
from gateway.synth.skeleton import read_skeleton  # noqa: E402
from tests.support.orthanc import start_orthanc  # noqa: E402
from tests.support.procs import start_gateway  # noqa: E402

JSON = {"Accept": "application/dicom+json"}
FRAME = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
TARGETS = {"import": ">= 3x"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--all-patients", action="store_true")
    ap.add_argument("--thin", action="store_true", help="CT series thinned (not --full)")
    ap.add_argument("--xr-size", type=int, default=256)
    ap.add_argument("--ct-size", type=int, default=128)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="collections-bench-"))
    try:
        result = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


def run(args: argparse.Namespace, work: Path) -> dict:
    patients = None if args.all_patients else args.patients
    t0 = time.perf_counter()
    twin = write_twin(work / "twin", "COVID-19-AR", full=not args.thin, patients=patients,
                      seed=2026, xr_size=args.xr_size, ct_size=args.ct_size, workers=2)
    synth_s = time.perf_counter() - t0
    logs = work / "logs"
    gw_s = _import_gateway(twin.root, work / "gw-data")
    orthanc = start_orthanc(work / "orthanc", logs)
    t0 = time.perf_counter()
    loaded = orthanc.load(sorted(twin.root.rglob("*.dcm")))  # not LICENSE
    oc_s = time.perf_counter() - t0
    assert loaded == twin.instances, (loaded, twin.instances)
    gateway = start_gateway(work / "gw-data", logs, workers=None)
    try:
        rows = [("import", "inst/s", twin.instances / gw_s, twin.instances / oc_s)]
        rows += _reads(gateway.url + "/dicomweb", orthanc.url + "/dicom-web", args.requests)
    finally:
        gateway.stop()
        orthanc.stop()
    _print(rows, twin, synth_s, args)
    return {"bench": "collections", "instances": twin.instances, "patients": twin.patients,
            "studies": twin.studies, "series": twin.series, "synth_s": round(synth_s, 1),
            "rows": [{"workload": w, "metric": m, "gateway": round(g, 2),
                      "orthanc": round(o, 2), "ratio": round(g / o, 3)} for w, m, g, o in rows]}


def _import_gateway(root: Path, data: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gateway", "import", str(root)], check=True,
                   capture_output=True, cwd=REPO, env={**os.environ, "GATEWAY_DATA_DIR": str(data)})
    return time.perf_counter() - t0


def _largest_ct(base: str) -> tuple[str, list[dict]]:
    """The CT study with most instances, and its series (from the gateway's QIDO)."""
    import requests
    best: tuple[int, str, list[dict]] = (-1, "", [])
    for study in requests.get(base + "/studies?ModalitiesInStudy=CT&limit=5000", timeout=60).json():
        uid = study["0020000D"]["Value"][0]
        n = study["00201208"]["Value"][0]
        if n > best[0]:
            best = (n, uid, requests.get(f"{base}/studies/{uid}/series", timeout=60).json())
    assert best[1], "the sample holds no CT study"
    return best[1], best[2]


def _largest_series(base: str) -> tuple[str, str, int]:
    """The series with most instances in the archive: study UID, series UID, count."""
    import requests
    found = requests.get(base + "/series?limit=5000&includefield=00201209", timeout=60,
                         headers=JSON).json()
    best = max(found, key=lambda s: s["00201209"]["Value"][0])
    return (best["0020000D"]["Value"][0], best["0020000E"]["Value"][0],
            best["00201209"]["Value"][0])


def _reads(gw: str, oc: str, n: int) -> list[tuple[str, str, float, float]]:
    study, series = _largest_ct(gw)
    series.sort(key=lambda s: s.get("00200011", {}).get("Value", [0])[0])
    big = max(series, key=lambda s: s["00201209"]["Value"][0])
    big_uid, big_n = big["0020000E"]["Value"][0], big["00201209"]["Value"][0]
    meta = f"/studies/{study}/series/{big_uid}/metadata"
    qido = f"/studies/{study}/series"
    rows = []
    top_study, top_uid, top_n = _largest_series(gw)
    if top_uid != big_uid:  # the archive's largest series (789 slices in COVID-19-AR)
        top = f"/studies/{top_study}/series/{top_uid}/metadata"
        a, b = _alternate(gw, oc, lambda c: c.timed(top, JSON)[0], n)
        rows.append((f"series metadata, {top_n}-slice series, the largest (warm)", "p50 ms", a, b))
    a, b = _alternate(gw, oc, lambda c: c.timed(meta, JSON)[0], n)
    rows.append((f"series metadata, {big_n}-slice series (warm)", "p50 ms", a, b))
    a, b = _alternate(gw, oc, lambda c: c.timed(qido, JSON)[0], n)
    rows.append((f"QIDO series of the largest CT study ({len(series)} series)", "p50 ms", a, b))
    first = series[0]["0020000E"]["Value"][0]
    import requests
    sop = requests.get(f"{gw}/studies/{study}/series/{first}/instances", timeout=60,
                       headers=JSON).json()[0]["00080018"]["Value"][0]
    frame = f"/studies/{study}/series/{first}/instances/{sop}/frames/1"

    def ohif_open(c: Client) -> float:
        t0 = time.perf_counter()
        c.timed(qido, JSON)
        for s in series:
            c.timed(f"/studies/{study}/series/{s['0020000E']['Value'][0]}/metadata", JSON)
        c.timed(frame, FRAME)
        return (time.perf_counter() - t0) * 1000

    total = sum(s["00201209"]["Value"][0] for s in series)
    a, b = _alternate(gw, oc, ohif_open, max(3, n // 4))
    rows.append((f"OHIF open of the largest CT study ({len(series)} series, {total} instances)",
                 "p50 ms", a, b))
    return rows


def _alternate(gw: str, oc: str, op: Callable[[Client], float], n: int) -> tuple[float, float]:
    """A B A B on one keep-alive connection each, after two warm-up rounds; medians."""
    ca, cb = Client(gw), Client(oc)
    for _ in range(2):
        op(ca), op(cb)
    a, b = [], []
    for _ in range(n):
        a.append(op(ca))
        b.append(op(cb))
    ca.close(), cb.close()
    return statistics.median(a), statistics.median(b)


def _print(rows: list, twin: CohortSummary, synth_s: float, args: argparse.Namespace) -> None:
    skeleton = read_skeleton("COVID-19-AR")
    print(f"COVID-19-AR twin: {twin.patients} of {len({s.patient for s in skeleton.series})} "
          f"patients, {twin.studies} studies, {twin.series} series, {twin.instances} instances "
          f"({twin.bytes / 1e6:.0f} MB; XR {args.xr_size} px, CT {args.ct_size} px; "
          f"{'thinned' if args.thin else 'full'} series), synthesised in {synth_s:.0f} s")
    print("| workload | metric | gateway | Orthanc | ratio | target |")
    print("|---|---|---|---|---|---|")
    for workload, metric, g, o in rows:
        target = TARGETS.get(workload, "")
        print(f"| {workload} | {metric} | {g:.1f} | {o:.1f} | {g / o:.2f}x | {target} |")


if __name__ == "__main__":
    main()
