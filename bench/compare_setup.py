"""Set-up for bench/compare.py: the cohort, Orthanc and the gateway loaded with the same
data, and the UIDs the workloads address."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.synth import CohortSummary, write_cohort  # noqa: E402
from tests.support import dcmtk  # noqa: E402
from tests.support.orthanc import Orthanc, start_orthanc  # noqa: E402
from tests.support.procs import GatewayServer, start_gateway  # noqa: E402

COHORT = dict(patients=20, seed=2026, ct_fraction=0.5, ct_slices=120, xr_size=1024)


@dataclass
class Study:
    patient: str
    study: str
    series: str
    instances: list[str]


@dataclass
class Bed:
    """Everything the workloads need, for both servers."""

    work: Path
    cohort: CohortSummary
    orthanc: Orthanc
    gateway: GatewayServer
    trivial: GatewayServer
    cts: list[Study] = field(default_factory=list)
    xr: Study | None = None
    ingest: dict[str, float] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.work / "logs"


def build(work: Path) -> Bed:
    cohort = write_cohort(work / "cohort", **COHORT)
    logs = work / "logs"
    orthanc = start_orthanc(work / "orthanc", logs, aet="ORTHANC")
    t0 = time.perf_counter()
    count = orthanc.load([cohort.root])
    orthanc_s = time.perf_counter() - t0
    assert count == cohort.instances, (count, cohort.instances)
    data = work / "gateway-data"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gateway", "import", str(cohort.root), "--clinical",
                    str(cohort.xlsx)], check=True, capture_output=True, cwd=REPO,
                   env={**os.environ, "GATEWAY_DATA_DIR": str(data)})
    import_s = time.perf_counter() - t0
    gateway = start_gateway(data, logs, workers=None)  # production config: WORKERS default
    trivial = start_gateway(work / "trivial-data", logs, workers=None, app="bench.trivial_app:app")
    bed = Bed(work, cohort, orthanc, gateway, trivial,
              ingest={"orthanc_cstore_inst_per_s": cohort.instances / orthanc_s,
                      "gateway_import_inst_per_s": cohort.instances / import_s,
                      "orthanc_cstore_s": orthanc_s, "gateway_import_s": import_s})
    discover(bed)
    return bed


def discover(bed: Bed) -> None:
    """The CT studies (120 slices each) and one radiograph, from the gateway's QIDO."""
    base = bed.gateway.url + "/dicomweb"
    studies = requests.get(base + "/studies", timeout=30).json()
    for s in studies:
        uid = s["0020000D"]["Value"][0]
        series = requests.get(f"{base}/studies/{uid}/series", timeout=30).json()
        top = max(series, key=lambda x: x["00201209"]["Value"][0])
        se_uid = top["0020000E"]["Value"][0]
        inst = requests.get(f"{base}/studies/{uid}/series/{se_uid}/instances", timeout=30).json()
        ordered = sorted(inst, key=lambda i: i.get("00200013", {}).get("Value", [0])[0])
        item = Study(s["00100020"]["Value"][0], uid, se_uid,
                     [i["00080018"]["Value"][0] for i in ordered])
        if top["00080060"]["Value"][0] == "CT":
            bed.cts.append(item)
        elif bed.xr is None and top["00080060"]["Value"][0] == "DX":
            bed.xr = item
    assert bed.cts and bed.xr, "cohort lacks a CT or a DX radiograph"


def restart(bed: Bed) -> None:
    """Both servers restarted: empty caches (the OS page cache stays warm for both)."""
    bed.gateway.stop()
    bed.gateway = start_gateway(bed.gateway.data_dir, bed.logs, workers=None)
    bed.orthanc.stop()
    bed.orthanc.start()


def fresh_orthanc(bed: Bed, name: str) -> Orthanc:
    return start_orthanc(bed.work / name, bed.logs, aet="ORTHANC")


def cstore_series(orthanc: Orthanc, files: list[Path]) -> float:
    """Seconds for DCMTK storescu to C-STORE ``files`` into ``orthanc``."""
    t0 = time.perf_counter()
    dcmtk.storescu(orthanc.aet, orthanc.dicom_port, files)
    return time.perf_counter() - t0


def series_files(bed: Bed, study: Study) -> list[Path]:
    """The source files of one series, found by SOPInstanceUID in the cohort folder."""
    from pydicom import dcmread
    wanted = set(study.instances)
    out = []
    for path in sorted(bed.cohort.root.rglob("*.dcm")):
        if dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID in wanted:
            out.append(path)
    assert len(out) == len(wanted)
    return out


def stow_body(files: list[Path], target: Path, boundary: str = "bench-boundary") -> Path:
    """A STOW-RS request body on disk (so the client streams it, as a real uploader)."""
    with open(target, "wb") as out:
        for f in files:
            out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(f.read_bytes())
            out.write(b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())
    return target
