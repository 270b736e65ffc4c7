"""The gateway in front of a DIMSE PACS (Orthanc): cold vs warm, beside Orthanc's own DICOMweb.

    python bench/dimse_bench.py [--ct-slices 64] [--repeat 3] [--warm 20] [--keep]

Synthesises a cohort with one chest CT of ``--ct-slices`` slices (512x512), loads it into
a real Orthanc (with its DICOMweb plugin) by DCMTK storescu, and in the same run measures:

- through the gateway (gunicorn, GATEWAY_PACS=Orthanc, C-GET): the CT series metadata
  cold (fresh gateway and empty cache: the whole series is pulled through) and warm
  (from the cache, no association), the whole series retrieved as stored cold and warm,
  and QIDO series-of-a-study (a C-FIND every time);
- Orthanc's own DICOMweb plugin on the same series: metadata, retrieve, QIDO;
- a bare pynetdicom C-GET of the same series (instances discarded), and C-FIND / one-
  instance C-GET with and without TCP_NODELAY (why gateway/dimse/sockets.py exists).

Prints a table and one JSON line. The machine is shared: compare ratios within a run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.dataset import Dataset  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402

from gateway.dimse import contexts as cx  # noqa: E402
from gateway.dimse.sockets import HANDLERS  # noqa: E402
from gateway.synth import write_cohort  # noqa: E402
from tests.support.orthanc import Orthanc, start_orthanc  # noqa: E402
from tests.support.procs import start_gateway  # noqa: E402

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def ms(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def fetch(session: requests.Session, url: str, accept: str | None = None) -> int:
    """GET, streamed and counted; must be 200. Returns the body size."""
    size = 0
    headers = {"Accept": accept} if accept else {}
    with session.get(url, headers=headers, stream=True, timeout=600) as r:
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        for chunk in r.iter_content(1 << 20):
            size += len(chunk)
    return size


class Dimse:
    """Bare pynetdicom against Orthanc, with or without the TCP_NODELAY hook."""

    def __init__(self, orthanc: Orthanc, nodelay: bool) -> None:
        self.received = 0
        contexts, roles = cx.query_retrieve_requested()
        handlers = (HANDLERS if nodelay else []) + [(evt.EVT_C_STORE, self._store)]
        self.assoc = AE(ae_title="BENCH").associate(
            "127.0.0.1", orthanc.dicom_port, contexts=contexts, ext_neg=roles,
            ae_title=orthanc.aet, max_pdu=0, evt_handlers=handlers)
        assert self.assoc.is_established

    def _store(self, event) -> int:
        self.received += len(event.encoded_dataset())
        return 0x0000

    def get(self, level: str, **uids: str) -> None:
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        for key, value in uids.items():
            setattr(ds, key, value)
        statuses = [s.Status for s, _i in self.assoc.send_c_get(ds, cx.GET_MODELS["S"])]
        assert statuses[-1] == 0x0000, statuses[-1]

    def find_series(self, study: str) -> None:
        ds = Dataset()
        ds.QueryRetrieveLevel, ds.StudyInstanceUID = "SERIES", study
        ds.SeriesInstanceUID = ds.Modality = ds.SeriesNumber = ""
        statuses = [s.Status for s, _i in self.assoc.send_c_find(ds, cx.FIND_MODELS["S"])]
        assert statuses[-1] == 0x0000

    def close(self) -> None:
        self.assoc.release()


def ct_target(orthanc: Orthanc) -> dict[str, str]:
    series = orthanc.post("/tools/find", {"Level": "Series", "Query": {"Modality": "CT"},
                                          "Expand": True})[0]
    study = orthanc.get(f"/studies/{series['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"]
    first = orthanc.get(f"/instances/{series['Instances'][0]}")["MainDicomTags"]["SOPInstanceUID"]
    return {"study": study, "series": series["MainDicomTags"]["SeriesInstanceUID"],
            "sop": first, "slices": str(len(series["Instances"]))}


def gateway_rows(args, work: Path, orthanc: Orthanc, t: dict[str, str]) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {k: [] for k in (
        "gateway metadata cold", "gateway metadata warm", "gateway retrieve cold",
        "gateway retrieve warm", "gateway QIDO series of study")}
    path = f"/dicomweb/studies/{t['study']}/series/{t['series']}"
    for i in range(args.repeat):  # cold: a fresh gateway on an empty cache each time
        for kind in ("metadata", "retrieve"):
            server = start_gateway(work / f"gw-{kind}-{i}", work / "logs", workers=1,
                                   env={"GATEWAY_PACS": orthanc.address})
            try:
                s = requests.Session()
                url = server.url + path + ("/metadata" if kind == "metadata" else "")
                accept = None if kind == "metadata" else AS_STORED
                rows[f"gateway {kind} cold"] += ms(lambda: fetch(s, url, accept), 1)
                if i == 0:
                    rows[f"gateway {kind} warm"] += ms(lambda: fetch(s, url, accept), args.warm)
                if i == 0 and kind == "metadata":
                    qido = f"{server.url}/dicomweb/studies/{t['study']}/series"
                    rows["gateway QIDO series of study"] += ms(lambda: fetch(s, qido), args.warm)
            finally:
                server.stop()
    return rows


def orthanc_rows(args, orthanc: Orthanc, t: dict[str, str]) -> dict[str, list[float]]:
    s = requests.Session()
    base = f"{orthanc.url}/dicom-web/studies/{t['study']}/series/{t['series']}"
    fetch(s, base + "/metadata")  # same OS page cache state as the warm gateway rows
    return {
        "orthanc dicomweb metadata": ms(lambda: fetch(s, base + "/metadata"), args.warm),
        "orthanc dicomweb retrieve": ms(lambda: fetch(s, base, AS_STORED), max(3, args.repeat)),
        "orthanc dicomweb QIDO series of study": ms(lambda: fetch(
            s, f"{orthanc.url}/dicom-web/studies/{t['study']}/series"), args.warm),
    }


def dimse_rows(args, orthanc: Orthanc, t: dict[str, str]) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    for nodelay in (True, False):
        tag = "nodelay" if nodelay else "nagle"
        peer = Dimse(orthanc, nodelay)
        try:
            if nodelay:
                rows["bare C-GET series (pynetdicom)"] = ms(lambda: peer.get(
                    "SERIES", StudyInstanceUID=t["study"], SeriesInstanceUID=t["series"]),
                    max(3, args.repeat))
            rows[f"C-FIND series of study ({tag})"] = ms(lambda: peer.find_series(t["study"]),
                                                         args.warm)
            rows[f"C-GET one instance ({tag})"] = ms(lambda: peer.get(
                "IMAGE", StudyInstanceUID=t["study"], SeriesInstanceUID=t["series"],
                SOPInstanceUID=t["sop"]), args.warm)
        finally:
            peer.close()
    return rows


def report(rows: dict[str, list[float]], t: dict[str, str], series_mb: float) -> None:
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"CT series: {t['slices']} slices, {series_mb:.1f} MB as stored")
    print(f"{'operation':42} {'n':>4} {'median ms':>10} {'min ms':>9}")
    for name, values in rows.items():
        print(f"{name:42} {len(values):4d} {med[name]:10.1f} {min(values):9.1f}")
    ratios = {
        "metadata_cold_vs_orthanc": med["gateway metadata cold"] / med["orthanc dicomweb metadata"],
        "metadata_warm_vs_orthanc": med["gateway metadata warm"] / med["orthanc dicomweb metadata"],
        "retrieve_cold_vs_orthanc": med["gateway retrieve cold"] / med["orthanc dicomweb retrieve"],
        "retrieve_warm_vs_orthanc": med["gateway retrieve warm"] / med["orthanc dicomweb retrieve"],
        "metadata_cold_vs_bare_cget": med["gateway metadata cold"]
        / med["bare C-GET series (pynetdicom)"],
        "cfind_nagle_vs_nodelay": med["C-FIND series of study (nagle)"]
        / med["C-FIND series of study (nodelay)"],
        "cget_instance_nagle_vs_nodelay": med["C-GET one instance (nagle)"]
        / med["C-GET one instance (nodelay)"],
    }
    for name, value in ratios.items():
        print(f"{'ratio ' + name:56} {value:8.2f}")
    print(json.dumps({"bench": "dimse", "slices": int(t["slices"]), "series_mb": round(series_mb, 1),
                      "median_ms": {k: round(v, 2) for k, v in med.items()},
                      "ratios": {k: round(v, 3) for k, v in ratios.items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-slices", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="cold samples (fresh gateways)")
    parser.add_argument("--warm", type=int, default=20, help="warm samples")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dimse-bench-"))
    orthanc = None
    try:
        cohort = write_cohort(work / "cohort", patients=1, seed=11, ct_slices=args.ct_slices,
                              xr_size=512, ct_fraction=1.0)
        orthanc = start_orthanc(work / "orthanc", work / "logs")
        orthanc.load([cohort.root])
        target = ct_target(orthanc)
        rows = {**gateway_rows(args, work, orthanc, target), **orthanc_rows(args, orthanc, target),
                **dimse_rows(args, orthanc, target)}
        size = fetch(requests.Session(), f"{orthanc.url}/dicom-web/studies/{target['study']}"
                                         f"/series/{target['series']}", AS_STORED)
        report(rows, target, size / 1e6)
    finally:
        if orthanc:
            orthanc.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
