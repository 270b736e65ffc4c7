"""The gateway against Orthanc on every viewer hot path, side by side, in one run.

    python bench/compare.py [--requests 60] [--seconds 10] [--out bench/out] [--keep]

Builds the 20-patient cohort (a 120-slice 512x512 CT for every second patient,
1024 px radiographs, fixed seed), starts Orthanc (Debian orthanc + orthanc-dicomweb,
HTTP compression off, TCP_NODELAY=1) and the gateway under gunicorn with its
production config, loads the same cohort into both, then runs each workload on both
alternately (A B A B..., warm-up first). Latency rows: one keep-alive client, median
and p95. Throughput rows: ``wrk -t2 -c8`` for --seconds per URL. Reference rows: a
trivial Flask route under the same gunicorn config, and a loopback sendfile copy.
Prints one table (ratio = gateway / Orthanc) and one JSON line; writes both to --out.
The machine is shared by clients and servers: compare ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import compare_setup as setup  # noqa: E402
from bench.benchlib import (Client, Samples, children, curl_mbps, loopback_ceiling,  # noqa: E402
                            rss_mb, wrk)
from bench.compare_remote import remote_rows  # noqa: E402

OHIF_LIST = "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060"
FRAMES = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
JSON = {"Accept": "application/dicom+json"}
JPEG = {"Accept": "image/jpeg"}


@dataclass
class Row:
    workload: str
    metric: str          # "p50 ms", "p95 ms", "req/s", "MB/s", "inst/s", "MB"
    gateway: float
    orthanc: float | None
    target: str = ""     # e.g. "<= 0.5x", ">= 2x", "<= 200"
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.gateway / self.orthanc if self.orthanc else None


def judge(row: Row) -> Row:
    if not row.target:
        return row
    op, number = row.target.split()
    value = row.ratio if number.endswith("x") else row.gateway
    limit = float(number.rstrip("x"))
    row.met = None if value is None else (value <= limit if op == "<=" else value >= limit)
    return row


class Runner:
    def __init__(self, bed: setup.Bed, requests: int, seconds: int) -> None:
        self.bed, self.n, self.seconds = bed, requests, seconds
        self.rows: list[Row] = []

    def add(self, *rows: Row) -> None:
        self.rows += [judge(r) for r in rows]

    def paths(self, rel: str) -> tuple[str, str]:
        return self.bed.gateway.url + "/dicomweb" + rel, self.bed.orthanc.url + "/dicom-web" + rel

    def latency(self, rel: str, headers: dict, n: int | None = None) -> tuple[Samples, Samples]:
        """Alternating A B A B on one keep-alive connection each, after a warm-up."""
        gw, oc = Client(self.bed.gateway.url + "/dicomweb"), Client(self.bed.orthanc.url + "/dicom-web")
        for _ in range(3):
            gw.timed(rel, headers), oc.timed(rel, headers)
        a, b = Samples([]), Samples([])
        for _ in range(n or self.n):
            ms, a.nbytes = gw.timed(rel, headers)
            a.ms.append(ms)
            ms, b.nbytes = oc.timed(rel, headers)
            b.ms.append(ms)
        gw.close(), oc.close()
        return a, b

    def hot_path(self, name: str, rel: str, headers: dict, p50: str = "", rps: str = "") -> None:
        a, b = self.latency(rel, headers)
        self.add(Row(name, "p50 ms", a.median, b.median, p50), Row(name, "p95 ms", a.p95, b.p95))
        url_a, url_b = self.paths(rel)
        ta, tb = wrk(url_a, headers, seconds=self.seconds), wrk(url_b, headers, seconds=self.seconds)
        self.add(Row(name, "req/s", ta["rps"], tb["rps"], rps))

    def retrieve(self, study: setup.Study, rounds: int = 5) -> None:
        rel = f"/studies/{study.study}/series/{study.series}"
        ga, gb = self.paths(rel)
        a, b = [], []
        for _ in range(rounds):
            for url, out in ((ga, a), (gb, b)):
                ms, nbytes = curl_mbps(url, AS_STORED)
                out.append(nbytes / 1e6 / (ms / 1000))
        self.add(Row(f"whole-series retrieve ({nbytes / 1e6:.0f} MB multipart)", "MB/s",
                     statistics.median(a), statistics.median(b), ">= 1.5x"))

    def first_metadata_after_restart(self) -> None:
        setup.restart(self.bed)
        a, b = [], []
        gw, oc = Client(self.bed.gateway.url + "/dicomweb"), Client(self.bed.orthanc.url + "/dicom-web")
        for ct in self.bed.cts:
            rel = f"/studies/{ct.study}/series/{ct.series}/metadata"
            a.append(gw.timed(rel, JSON)[0])
            b.append(oc.timed(rel, JSON)[0])
        self.add(Row("series metadata, first request after a restart", "p50 ms",
                     statistics.median(a), statistics.median(b), "<= 1x"))

    def ingest(self) -> None:
        bed = self.bed
        self.add(Row("import of the cohort vs Orthanc C-STORE ingest", "inst/s",
                     bed.ingest["gateway_import_inst_per_s"], bed.ingest["orthanc_cstore_inst_per_s"],
                     ">= 3x"))
        ct = bed.cts[-1]
        files = setup.series_files(bed, ct)
        body = setup.stow_body(files, bed.work / "stow-body.bin")
        fresh_gw = setup.start_gateway(bed.work / "stow-data", bed.logs, workers=None)
        fresh_oc = setup.fresh_orthanc(bed, "orthanc-stow")
        try:
            ms, _ = _curl_post(fresh_gw.url + "/dicomweb/studies", body)
            oc_s = setup.cstore_series(fresh_oc, files)
        finally:
            fresh_gw.stop(), fresh_oc.stop()
        self.add(Row(f"STOW of a {len(files)}-slice series vs Orthanc C-STORE of it", "inst/s",
                     len(files) / (ms / 1000), len(files) / oc_s, ">= 3x"))

    def fhir(self) -> None:
        pid = self.bed.cts[0].patient
        trivial = wrk(self.bed.trivial.url + "/healthz", seconds=self.seconds)
        self.add(Row("reference: trivial Flask route, same gunicorn config", "req/s",
                     trivial["rps"], None))
        for name, rel in (("FHIR Observation?patient=X&category=laboratory",
                           f"/fhir/Observation?patient={pid}&category=laboratory"),
                          ("FHIR Patient?_id=X", f"/fhir/Patient?_id={pid}")):
            res = wrk(self.bed.gateway.url + rel, {"Accept": "application/fhir+json"},
                      seconds=self.seconds)
            row = Row(name + " (vs trivial route)", "req/s", res["rps"], trivial["rps"], ">= 0.5x")
            self.add(row)

    def memory(self) -> None:
        pids = children(self.bed.gateway.proc.pid)
        worst = max(rss_mb(p) for p in pids)
        self.add(Row(f"worker RSS after the run (max of {len(pids)} workers)", "MB", worst, None,
                     "<= 200"))


def _curl_post(url: str, body: Path) -> tuple[float, int]:
    import subprocess
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{http_code}",
                          "-H", 'Content-Type: multipart/related; type="application/dicom"; '
                                'boundary=bench-boundary',
                          "-H", "Accept: application/dicom+json",
                          "--data-binary", f"@{body}", url], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[1] == "200", f"STOW answered {out[1]}"
    return float(out[0]) * 1000, body.stat().st_size


def run(bed: setup.Bed, requests: int, seconds: int) -> list[Row]:
    r = Runner(bed, requests, seconds)
    ct, xr = bed.cts[0], bed.xr
    mid = ct.instances[len(ct.instances) // 2]
    inst = f"/studies/{ct.study}/series/{ct.series}/instances/{mid}"
    r.hot_path("OHIF study-list query", OHIF_LIST, JSON, p50="<= 0.5x", rps=">= 2x")
    r.hot_path("QIDO studies?PatientID=", f"/studies?PatientID={ct.patient}", JSON, rps=">= 1x")
    r.hot_path("QIDO series of a study", f"/studies/{ct.study}/series", JSON, rps=">= 1x")
    r.hot_path(f"series metadata, {len(ct.instances)}-slice CT (warm)",
               f"/studies/{ct.study}/series/{ct.series}/metadata", JSON, p50="<= 0.2x",
               rps=">= 10x")
    r.hot_path("single frame (octet-stream, transfer-syntax=*)", inst + "/frames/1", FRAMES,
               p50="<= 1x", rps=">= 1x")
    r.hot_path("rendered JPEG of a CT slice", inst + "/rendered", JPEG, p50="<= 1x", rps=">= 1x")
    thumb = Client(bed.gateway.url + "/dicomweb")
    t = Samples([thumb.timed(f"/studies/{xr.study}/series/{xr.series}/thumbnail", JPEG)[0]
                 for _ in range(requests)])
    r.add(Row("series thumbnail (Orthanc 1.10: none)", "p50 ms", t.median, None))
    r.retrieve(ct)
    r.add(Row("reference: loopback sendfile of the same 63 MB to curl", "MB/s",
              loopback_ceiling(_big_file(bed)), None))
    r.fhir()
    r.rows += [judge(x) for x in remote_rows(bed)]
    r.ingest()
    r.memory()
    r.first_metadata_after_restart()
    return r.rows


def _big_file(bed: setup.Bed) -> Path:
    path = bed.work / "ceiling.bin"
    with open(path, "wb") as fh:
        for f in setup.series_files(bed, bed.cts[0]):
            fh.write(f.read_bytes())
    return path


def render(rows: list[Row], ingest: dict) -> str:
    head = "| workload | metric | gateway | Orthanc | ratio | target | met |\n|---|---|---|---|---|---|---|"
    lines = [head]
    for x in rows:
        oc = f"{x.orthanc:.1f}" if x.orthanc is not None else "—"
        ratio = f"{x.ratio:.2f}×" if x.ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: ""}[x.met]
        lines.append(f"| {x.workload} | {x.metric} | {x.gateway:.1f} | {oc} | {ratio} | "
                     f"{x.target} | {met} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=60, help="latency samples per server")
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per URL")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="compare-"))
    t0 = time.monotonic()
    bed = setup.build(work)
    try:
        rows = run(bed, args.requests, args.seconds)
    finally:
        bed.gateway.stop(), bed.trivial.stop(), bed.orthanc.stop()
    table = render(rows, bed.ingest)
    result = {"bench": "compare", "seconds": round(time.monotonic() - t0),
              "rows": [{**asdict(x), "ratio": x.ratio} for x in rows]}
    print(table)
    print(json.dumps(result))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"compare-{stamp}.md").write_text(table + "\n")
    (args.out / f"compare-{stamp}.json").write_text(json.dumps(result, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
