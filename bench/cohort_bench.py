"""Cohort questions, facets and the ZIP download on the COVID-19-AR twin (all 105 patients).

    python bench/cohort_bench.py [--work /tmp/cohort-bench] [--runs 15] [--workers N]
                                 [--full] [--xr-size PX] [--ct-size PX]

Synthesises the twin once into --work (every patient, study and series of the real
collection; CT series thin, 512 px images: ~1.8 GB, kept for the next run), imports it with the
clinical sheet, serves it with gunicorn (production config) and measures, with one keep-alive
client each:

- p50 of each of the ten cohort questions of DESIGN.md section 9 as FHIR requests (7: POST
  Group with member-filters then ``$export`` to completion; 10: POST /cohorts of question 1,
  its ``.tcia`` manifest and its ZIP);
- p50 of ``GET /cohorts/facets`` with a selection (one SQL statement);
- ZIP download MB/s of a cohort of every study against whole-series WADO-RS retrieve MB/s of
  the same series (multipart, as stored), alternating, medians (target ZIP >= 0.8x).

Prints a table and one JSON line. A shared 2-core machine: read ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import Client  # noqa: E402
from tests.support.procs import REPO, start_gateway  # noqa: E402

SCT, LOINC = "http://snomed.info/sct", "http://loinc.org"
DIABETES_2, CKD, ICU = f"{SCT}|44054006", f"{SCT}|709044004", f"{SCT}|305351004"
Q1 = ("ImagingStudy?modality=CT&patient._has:Condition:patient:code=" + DIABETES_2
      + "&patient._has:Encounter:patient:type=" + ICU)
QUESTIONS = {
    "1 CT of diabetic ICU patients": Q1,
    "2 radiographs of the deceased": "ImagingStudy?modality=DX,CR&patient.deceased=true",
    "3 CKD deaths (count)": f"Patient?_has:Condition:patient:code={CKD}&deceased=true"
                            "&_summary=count",
    "4 ICU mortality, one race (count)": "Patient?race=urn:oid:2.16.840.1.113883.6.238|2054-5"
                                         "&deceased=true"
                                         f"&_has:Encounter:patient:type={ICU}&_summary=count",
    "5 studies with FiO2 >= 50%": "ImagingStudy?_has:Observation:derived-from:"
                                  f"code-value-quantity={LOINC}|3150-0$ge50",
    "6 radiographs, BMI >= 40, sorted": "ImagingStudy?modality=DX,CR&patient._has:Observation:"
                                        f"patient:code-value-quantity={LOINC}|39156-5$ge40"
                                        "&_sort=patient,started",
    "8 reports: consolidation/ground-glass": "DiagnosticReport?_content=consolidation,"
                                             "ground-glass",
}
# 9: the collection's patients through ResearchSubject (_has), counted
COLLECTION = ("/fhir/Patient?_has:ResearchSubject:individual:study=ResearchStudy/COVID-19-AR"
              "&_summary=count")
FACETS = "/cohorts/facets?condition=44054006&modality=CT&sex=male&icu=yes"
AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


def prepare(work: Path, full: bool, xr_size: int, ct_size: int) -> Path:
    """The twin and an imported data dir, made once and kept in ``work``."""
    from gateway.synth import write_twin
    twin, data = work / "twin", work / "data"
    if not (twin / "metadata.csv").is_file():
        write_twin(twin, "COVID-19-AR", full=full, xr_size=xr_size, ct_size=ct_size, workers=2)
    if not (data / "index.sqlite").is_file():
        done = subprocess.run([sys.executable, "-m", "gateway", "import", str(twin)], cwd=REPO,
                              env={**os.environ, "GATEWAY_DATA_DIR": str(data)},
                              capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise SystemExit(done.stderr)
    return data


def p50(client: Client, path: str, runs: int) -> float:
    client.timed(path)  # warm: plans, caches, connections
    return statistics.median(client.timed(path)[0] for _ in range(runs))


def question_7(base: str) -> float:
    """POST Group (men older than 65 with an ICU stay) and export it to completion."""
    filters = ["Patient?gender=male", f"Observation?code-value-quantity={LOINC}|30525-0$gt65",
               f"Encounter?type={ICU}"]
    body = {"resourceType": "Group", "type": "person", "actual": True, "modifierExtension": [
        {"url": "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter",
         "valueExpression": {"language": "application/x-fhir-query", "expression": q}}
        for q in filters]}
    t0 = time.perf_counter()
    group = requests.post(f"{base}/fhir/Group", json=body, timeout=60).json()
    status = requests.get(f"{base}/fhir/Group/{group['id']}/$export",
                          headers={"Prefer": "respond-async"}, timeout=60)
    poll = status.headers["Content-Location"]
    while requests.get(poll, timeout=60).status_code == 202:
        time.sleep(0.05)
    return (time.perf_counter() - t0) * 1000


def question_10(base: str, client: Client) -> float:
    t0 = time.perf_counter()
    made = requests.post(f"{base}/cohorts", json={"fhir": Q1}, timeout=60).json()
    client.timed(f"/cohorts/{made['id']}/manifest?format=tcia")
    client.timed(f"/cohorts/{made['id']}/download")
    return (time.perf_counter() - t0) * 1000


def throughput(base: str, client: Client, rounds: int) -> dict:
    """ZIP of every study vs retrieving each of the same series, alternating."""
    made = requests.post(f"{base}/cohorts", json={"qido": "studies"}, timeout=120).json()
    series = requests.get(f"{base}/cohorts/{made['id']}", timeout=60).json()["series"]
    zips, retrieves, size = [], [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        _, n = client.get(f"/cohorts/{made['id']}/download")
        zips.append(n / (time.perf_counter() - t0) / 1e6)
        t0, total = time.perf_counter(), 0
        for s in series:
            total += client.get(f"/dicomweb/studies/{s['study']}/series/{s['uid']}",
                                AS_STORED)[1]
        retrieves.append(total / (time.perf_counter() - t0) / 1e6)
        size = n
    return {"zip_mbps": statistics.median(zips), "retrieve_mbps": statistics.median(retrieves),
            "zip_bytes": size, "series": len(series)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/cohort-bench"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--full", action="store_true",
                        help="the twin with every real instance (31,935; default: CT thinned)")
    parser.add_argument("--xr-size", type=int, default=512)
    parser.add_argument("--ct-size", type=int, default=512)
    args = parser.parse_args()
    data = prepare(args.work, args.full, args.xr_size, args.ct_size)
    server = start_gateway(data, args.work / "logs", workers=args.workers, timeout=120)
    try:
        client = Client(server.url)
        rows = {name: p50(client, "/fhir/" + quote(q, safe="?=&,:|$/._-"), args.runs)
                for name, q in QUESTIONS.items()}
        rows["7 Group + $export (to completion)"] = statistics.median(
            question_7(server.url) for _ in range(5))
        rows["10 cohort of 1: make, .tcia, ZIP"] = statistics.median(
            question_10(server.url, client) for _ in range(5))
        rows["9 patients of the collection (_has:ResearchSubject, count)"] = p50(
            client, COLLECTION, args.runs)
        rows["facets (one statement)"] = p50(client, FACETS, args.runs)
        speed = throughput(server.url, client, args.rounds)
    finally:
        server.stop()
    report(rows, speed)


def report(rows: dict[str, float], speed: dict) -> None:
    print("| workload | p50 ms |\n|---|---|")
    for name in sorted(rows, key=lambda n: (n[0].isdigit() and int(n.split()[0]) or 99, n)):
        print(f"| {name} | {rows[name]:.1f} |")
    ratio = speed["zip_mbps"] / speed["retrieve_mbps"]
    print(f"\n| transfer | MB/s |\n|---|---|\n| ZIP download, {speed['series']} series, "
          f"{speed['zip_bytes'] / 1e6:.0f} MB | {speed['zip_mbps']:.0f} |\n"
          f"| WADO-RS retrieve of the same series, one after another | "
          f"{speed['retrieve_mbps']:.0f} |\n| ratio (target >= 0.8x) | {ratio:.2f}x |")
    print(json.dumps({"p50_ms": rows, **speed, "ratio": ratio}))


if __name__ == "__main__":
    main()
