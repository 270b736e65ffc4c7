"""This tree against an earlier one, under gunicorn, same cohort, same machine, same run.

    python bench/ab.py OLD_TREE [--patients 20] [--seconds 5] [--rounds 5] [--out FILE]

OLD_TREE is a checkout of an earlier commit (``git worktree add /tmp/old <commit>``). One
synthetic cohort is written (this tree's synth: 20 patients, 120-slice CTs, 1024 px
radiographs, the compare cohort), each tree imports it with its own ``import`` into its own
data dir and serves it with its own ``serve`` (its gunicorn config, AUTH_MODE=off). wrk
(-t2 -c8) drives the rows round by round, old then new, so drift on a shared machine hits
both; per row: best of the rounds each, and the median of each round's new/old ratio.
This is the "no row more than 10 % worse than before" check of a refactoring.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import wrk  # noqa: E402
from tests.support.procs import Proc, free_port, http_ok, wait_until  # noqa: E402

NEW = Path(__file__).resolve().parents[1]


def _import(tree: Path, cohort: Path, sheet: Path, data: Path) -> None:
    """``cohort`` is the collection folder (DICOM only: an older importer rejects sidecars)."""
    subprocess.run([sys.executable, "-m", "gateway", "import", str(cohort), "--clinical",
                    str(sheet)], cwd=tree, check=True, capture_output=True,
                   env=_env(tree, data, 0))


def _env(tree: Path, data: Path, port: int) -> dict[str, str]:
    import os
    return {**os.environ, "PYTHONPATH": str(tree), "GATEWAY_DATA_DIR": str(data),
            "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}", "GATEWAY_LOG_LEVEL": "WARNING"}


def _serve(tree: Path, data: Path, logs: Path) -> tuple[str, Proc]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc([sys.executable, "-m", "gateway", "serve", "--http", f"127.0.0.1:{port}"],
                logs / f"{tree.name}-{port}.log", _env(tree, data, port), cwd=tree).start()
    wait_until(lambda: http_ok(url + "/healthz"), timeout=120, what=str(tree), proc=proc)
    return url, proc


def _rows(url: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The hot paths, found on the new gateway (both hold the same UIDs and ids)."""
    import requests
    ct = requests.get(url + "/dicomweb/series?Modality=CT&limit=1", timeout=30).json()[0]
    study, series = ct["0020000D"]["Value"][0], ct["0020000E"]["Value"][0]
    base = f"/dicomweb/studies/{study}/series/{series}"
    sop = requests.get(url + base + "/instances?limit=1", timeout=30).json()[0][
        "00080018"]["Value"][0]
    pid = requests.get(url + f"/dicomweb/studies?StudyInstanceUID={study}", timeout=30
                       ).json()[0]["00100020"]["Value"][0]
    fhir_patient = requests.get(url + f"/fhir/Patient?identifier={pid}", timeout=30
                                ).json()["entry"][0]["resource"]["id"]
    json_accept = {"Accept": "application/dicom+json"}
    return {
        "QIDO studies?PatientID=": (f"/dicomweb/studies?PatientID={pid}", json_accept),
        "series metadata": (f"{base}/metadata", json_accept),
        "single frame": (f"{base}/instances/{sop}/frames/1",
                         {"Accept": 'multipart/related; type="application/octet-stream"'}),
        "rendered JPEG": (f"{base}/instances/{sop}/rendered", {"Accept": "image/jpeg"}),
        "whole-series retrieve": (base, {
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}),
        "FHIR Observation?patient&category": (
            f"/fhir/Observation?patient={fhir_patient}&category=laboratory", {}),
        "FHIR Patient read": (f"/fhir/Patient/{fhir_patient}", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from gateway.synth import write_cohort
    root = Path(tempfile.mkdtemp(prefix="ab-"))
    procs: list[Proc] = []
    try:
        cohort = write_cohort(root / "cohort", patients=args.patients, seed=0, ct_slices=120,
                              xr_size=1024)
        assert cohort.xlsx is not None
        urls = {}
        for name, tree in (("old", args.old.resolve()), ("new", NEW)):
            _import(tree, cohort.root, cohort.xlsx, root / name)
            urls[name], proc = _serve(tree, root / name, root / "logs")
            procs.append(proc)
        results = _drive(urls, _rows(urls["new"]), args.seconds, args.rounds)
    finally:
        for proc in procs:
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)
    _report(results, args)


def _drive(urls: dict[str, str], rows: dict, seconds: int, rounds: int) -> dict:
    results: dict[str, dict[str, list[float]]] = {}
    for name, (path, headers) in rows.items():  # warm-up: caches, first-use imports
        for url in urls.values():
            wrk(url + path, headers, seconds=1)
    for _ in range(rounds):
        for name, (path, headers) in rows.items():
            for side, url in urls.items():
                got = wrk(url + path, headers, seconds=seconds)["rps"]
                results.setdefault(name, {}).setdefault(side, []).append(got)
    return results


def _report(results: dict, args: argparse.Namespace) -> None:
    lines = [f"{'row':38} {'old best':>9} {'new best':>9} {'best':>6} {'paired':>7}"]
    summary = {}
    for name, sides in results.items():
        old, new = max(sides["old"]), max(sides["new"])
        paired = statistics.median(n / o for o, n in zip(sides["old"], sides["new"],
                                                          strict=True))
        summary[name] = {"old": sides["old"], "new": sides["new"],
                         "best_ratio": round(new / old, 3), "paired_median": round(paired, 3)}
        lines.append(f"{name:38} {old:9.0f} {new:9.0f} {new / old:6.2f} {paired:7.2f}")
    text = "\n".join(lines) + "\n" + json.dumps({"bench": "ab", "old": str(args.old),
                                                 "rounds": args.rounds, **summary}) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
