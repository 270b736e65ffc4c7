"""file:// against s3:// (SeaweedFS) on the viewer's hot paths, side by side, in one run,
plus 1 against 3 nodes behind nginx on PostgreSQL + SeaweedFS.

    python bench/s3_bench.py [--seconds 4] [--out bench/out]

Builds a small cohort (4 patients, a 60-slice 512x512 CT for half of them, fixed seed),
imports it twice (DATA_DIR/files; a SeaweedFS bucket), starts one gateway on each (gunicorn,
2 workers, SQLite index) and runs each workload on both alternately after a warm-up:
latency rows with one keep-alive client per gateway (median), retrieve as MB/s with curl,
STOW as instances/s; the two gateways alternate request by request. Then the same cohort on PostgreSQL + SeaweedFS behind nginx with 1 and 3 nodes
(wrk -t2 -c8). "retrieve" is the median of seven runs after a warm-up (the warm-up fills
the s3 node's hot cache, the runs are sent from it); "retrieve cold" empties it first. S3 requests and bytes per instance are counted in-process on the store's
own client. On 2 cores the 3-node row shows overhead, not scale. Takes about 3 minutes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import Client, children, curl_mbps, rss_mb, wrk  # noqa: E402
from gateway.archive.local import open_local  # noqa: E402
from gateway.archive.protocol import Level, Query, UidPath  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.dicomweb import multipart  # noqa: E402
from gateway.ingest.importer import run_import  # noqa: E402
from gateway.synth import write_cohort  # noqa: E402
from tests.support.dicomfiles import make_file  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402
from tests.support.procs import GatewayServer, start_gateway  # noqa: E402
from tests.support.s3gateway import s3_env, s3_settings  # noqa: E402
from tests.support.seaweed import Seaweed, start_seaweed  # noqa: E402
from tests.support.topology import topology  # noqa: E402

JSON = {"Accept": "application/dicom+json"}
DICOM = {"Accept": 'multipart/related; type="application/dicom"'}
OCTET = {"Accept": "multipart/related; type=application/octet-stream"}
TARGETS = {"qido": 0.9, "metadata": 0.9, "frame (hot)": 0.8, "retrieve MB/s": 0.5}


def _paths(archive: Any) -> dict[str, Any]:
    """A CT series (frames, retrieve) and its instances, from the index."""
    for s in archive.search(Query(Level.SERIES, {"Modality": "CT"})).matches:
        where = UidPath(s["0020000D"]["Value"][0], s["0020000E"]["Value"][0])
        insts = list(archive.instances(where))
        if len(insts) > 10:
            return {"study": where.study, "series": where.series, "insts": insts}
    raise RuntimeError("no CT series in the cohort")


def _workloads(ct: dict[str, Any], clients: dict[str, Client]
               ) -> dict[str, tuple[int, Callable[[str, GatewayServer], float]]]:
    """Each workload: (repetitions, one measurement on one gateway). The driver alternates
    the gateways request by request, so a burst of load on the machine hits both."""
    base = f"/dicomweb/studies/{ct['study']}/series/{ct['series']}"
    hot = ct["insts"][len(ct["insts"]) // 2].sop_uid
    cold = {kind: iter(ct["insts"]) for kind in clients}

    def lat(path: str, headers: dict[str, str]) -> Callable[[str, GatewayServer], float]:
        return lambda kind, gw: clients[kind].timed(path, headers)[0]

    def cold_frame(kind: str, gw: GatewayServer) -> float:  # an instance never read before
        inst = next(cold[kind])
        return clients[kind].timed(f"{base}/instances/{inst.sop_uid}/frames/1", OCTET)[0]

    def retrieve(kind: str, gw: GatewayServer) -> float:
        ms, nbytes = curl_mbps(gw.url + base, DICOM)
        return nbytes / ms / 1000

    def retrieve_cold(kind: str, gw: GatewayServer) -> float:  # the s3 node's hot cache emptied
        for entry in (gw.data_dir / "hot").glob("*"):
            entry.unlink(missing_ok=True)
        return retrieve(kind, gw)

    return {"qido": (40, lat("/dicomweb/studies?limit=100", JSON)),
            "metadata": (40, lat(f"{base}/metadata", JSON)),
            "frame (hot)": (40, lat(f"{base}/instances/{hot}/frames/1", OCTET)),
            "frame (cold)": (min(20, len(ct["insts"]) - 1), cold_frame),
            "rendered": (30, lat(f"{base}/instances/{hot}/frames/1/rendered",
                                 {"Accept": "image/jpeg"})),
            "retrieve MB/s": (7, retrieve),
            "retrieve cold MB/s": (3, retrieve_cold)}


def _stow_rate(gw: GatewayServer, work: Path, tag: str, count: int = 20) -> float:
    import requests
    files = [make_file(work / f"{tag}{i}.dcm", study=f"BENCH-{tag}", series=f"BS-{tag}",
                       sop=f"{tag}-{i}", size=256, InstanceNumber=i + 1) for i in range(count)]
    body = multipart.encode([("application/dicom", p.read_bytes()) for p in files], "bb")
    t0 = time.perf_counter()
    r = requests.post(f"{gw.url}/dicomweb/studies", data=body, timeout=120,
                      headers={"Content-Type": 'multipart/related; type="application/dicom"; '
                                               'boundary=bb', **JSON})
    if r.status_code != 200:
        raise RuntimeError(f"STOW answered {r.status_code}: {r.text[:200]}")
    return count / (time.perf_counter() - t0)


def _worker_rss(gw: GatewayServer) -> float:
    return max((rss_mb(p) for p in children(gw.proc.pid)), default=0.0)


def compare(work: Path, cohort: Any, store: Seaweed) -> dict[str, Any]:
    """The file and the s3 gateway, each workload alternately on both."""
    bucket = store.create_bucket("bench")
    file_dir, s3_dir = work / "file", work / "s3"
    for data, changes in ((file_dir, {}), (s3_dir, None)):
        settings = (Settings().replace(data_dir=data) if changes is not None
                    else s3_settings(store, data, f"s3://{bucket}/a", s3_timeout=5))
        archive = open_local(settings)
        run_import(archive, [cohort.root], workers=2, progress=False)
        if changes is None:
            ct = _paths(archive)
        archive.close()
    logs = work / "logs"
    gws = {"file": start_gateway(file_dir, logs, workers=2),
           "s3": start_gateway(s3_dir, logs, workers=2,
                               env=s3_env(store, f"s3://{bucket}/a", s3_timeout=5))}
    rows: dict[str, dict[str, float]] = {}
    clients = {kind: Client(gw.url) for kind, gw in gws.items()}
    try:
        for name, (count, run) in _workloads(ct, clients).items():
            values: dict[str, list[float]] = {"file": [], "s3": []}
            for i in range(count + 1):  # the first of each is a warm-up (not for cold rows)
                for kind, gw in gws.items():
                    value = run(kind, gw)
                    if i or "cold" in name:
                        values[kind].append(value)
            rows[name] = {k: statistics.median(v) for k, v in values.items()}
        rows["STOW inst/s"] = {k: _stow_rate(gw, work, k) for k, gw in gws.items()}
        rss = {k: _worker_rss(gw) for k, gw in gws.items()}
    finally:
        for c in clients.values():
            c.close()
        for gw in gws.values():
            gw.stop()
    return {"rows": rows, "worker_rss_mb": rss, "store_rss_mb": store.rss_bytes() / 2**20}


def per_instance(work: Path, cohort: Any, store: Seaweed) -> dict[str, float]:
    """S3 requests by operation and bytes stored per instance, on the store's own client."""
    bucket = store.create_bucket("count")
    archive = open_local(s3_settings(store, work / "count", f"s3://{bucket}/c"))
    calls: dict[str, int] = {}
    archive.files.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.__setitem__(model.name,
                                                               calls.get(model.name, 0) + 1))
    files = sorted(Path(cohort.root).rglob("*.dcm"))[:20]
    for path in files:
        archive.store(path)
    stored = dict(calls)
    insts = [i for i in archive.instances(UidPath()) if i.frames][:10]
    calls.clear()
    for inst in insts:
        b"".join(inst.chunks())
    got = dict(calls)
    calls.clear()
    for inst in insts:
        inst.read_frame(1)
    cold = dict(calls)
    calls.clear()
    for inst in insts:
        inst.read_frame(1)
    hot = sum(calls.values())
    objects = store.client().list_objects_v2(Bucket=bucket)["Contents"]
    ratio = sum(o["Size"] for o in objects) / sum(p.stat().st_size for p in files)
    archive.close()
    return {"STOW PUTs/instance": stored.get("PutObject", 0) / len(files),
            "STOW other requests/instance": (sum(stored.values()) - stored.get("PutObject", 0))
            / len(files),
            "retrieve requests/instance": sum(got.values()) / len(insts),
            "cold frame requests": sum(cold.values()) / len(insts),
            "hot frame requests": hot / len(insts), "stored bytes / file bytes": ratio}


def nodes(work: Path, cohort: Any, store: Seaweed, seconds: int) -> dict[str, dict[str, float]]:
    """QIDO and metadata throughput through nginx with 1 and then 3 nodes."""
    pg = start_postgres(work / "logs")
    try:
        db = pg.create_database("bench")
        bucket = store.create_bucket("nodes")
        settings = s3_settings(store, work / "loader", f"s3://{bucket}/archive",
                               database_url=db)
        archive = open_local(settings)
        run_import(archive, [cohort.root], workers=2, progress=False)
        ct = _paths(archive)
        archive.close()
        meta = f"/dicomweb/studies/{ct['study']}/series/{ct['series']}/metadata"
        t = topology(work / "topo", work / "logs", db, store, bucket)
        out: dict[str, dict[str, float]] = {}
        try:
            for count in (1, 3):
                while len(t.nodes) < count:
                    t.add_node(workers=1)
                t.start_nginx()
                out[f"{count} node(s)"] = {
                    "qido req/s": wrk(t.base + "/dicomweb/studies?limit=100", JSON,
                                      seconds=seconds)["rps"],
                    "metadata req/s": wrk(t.base + meta, JSON, seconds=seconds)["rps"]}
        finally:
            t.stop()
        return out
    finally:
        pg.stop()


def report(result: dict[str, Any]) -> str:
    lines = [f"{'workload':<16} {'file://':>10} {'s3://':>10} {'s3/file':>8}  target"]
    for name, v in result["compare"]["rows"].items():
        higher_better = name.endswith("/s")
        ratio = v["s3"] / v["file"] if higher_better else v["file"] / v["s3"]
        target = TARGETS.get(name)
        mark = "" if target is None else (f">= {target}  " + ("ok" if ratio >= target else "MISSED"))
        unit = "" if higher_better else " ms"
        lines.append(f"{name:<16} {v['file']:>8.2f}{unit:<3}{v['s3']:>7.2f}{unit:<3}"
                     f"{ratio:>7.2f}x  {mark}")
    lines.append("(ratio: speed of s3 relative to file; latency rows are medians)")
    c = result["compare"]
    lines.append(f"worker RSS MB: file {c['worker_rss_mb']['file']:.0f}, "
                 f"s3 {c['worker_rss_mb']['s3']:.0f}; SeaweedFS RSS {c['store_rss_mb']:.0f} MB")
    for k, v in result["per_instance"].items():
        lines.append(f"{k}: {v:.2f}")
    for k, v in result["nodes"].items():
        lines.append(f"nginx + {k}: " + ", ".join(f"{m} {x:.0f}" for m, x in v.items()))
    lines.append("(one worker per node; 2 cores for clients, nginx, nodes, PostgreSQL and "
                 "SeaweedFS: more nodes add processes, not cores, so no row here shows scale)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="s3bench-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        cohort = write_cohort(work / "cohort", patients=4, seed=3, ct_slices=60, xr_size=512,
                              ct_fraction=0.5)
        store = start_seaweed(work / "logs")
        try:
            result = {"compare": compare(work, cohort, store),
                      "per_instance": per_instance(work, cohort, store),
                      "nodes": nodes(work, cohort, store, args.seconds)}
        finally:
            store.close()
    result["seconds"] = time.monotonic() - started
    text = report(result) + f"\n({result['seconds']:.0f} s)"
    print(text)
    print(json.dumps(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "s3_bench.txt").write_text(text + "\n")
    (args.out / "s3_bench.json").write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
