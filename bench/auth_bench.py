"""What AUTH_MODE=required costs against AUTH_MODE=off, same run, same data, under gunicorn.

    python bench/auth_bench.py [--seconds 4] [--rounds 8] [--interleaved N]

Two gateways on copies of one small synthetic cohort (6 patients), one `off`, one
`required` with the forged loopback issuer (tests/support/forged_issuer.py) and a
`user/*.rs` token: token checked (cached after the first), policy, scope, audit record
queued and stored. wrk (2 threads, 8 connections) drives, per round and mode, the OHIF
study list (QIDO with includefield), frames of an instance, series metadata and a FHIR
search; the modes alternate so drift on the shared machine hits both. Prints req/s per
endpoint and mode, the ratio required/off of the best rounds (1.0 = free) and the median
of the rounds' paired ratios (each round runs both modes back to back), then one JSON
line. (Driving both gateways at once is no fairer here: two idle-identical `off` gateways
driven together differed by 0.47-1.10x in 4 s rounds on this machine.)

On a machine shared with other jobs wrk's numbers drift by more than the cost measured;
`--interleaved N` also runs both apps in this process and alternates them request by
request (N each, Flask test client, audit thread included), so drift hits both equally:
the ratio of median request times is the throughput ratio of one worker thread.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import wrk  # noqa: E402
from gateway.archive.local import open_local  # noqa: E402
from gateway.archive.protocol import Level, Query  # noqa: E402
from gateway.config import Settings  # noqa: E402
from tests.support.forged_issuer import ForgedIssuer  # noqa: E402
from tests.support.oidc_idp import DEFAULT_AUDIENCE  # noqa: E402
from tests.support.procs import start_gateway  # noqa: E402

STUDY_LIST = ("/dicomweb/studies?limit=101&offset=0&fuzzymatching=false&includefield="
              "00081030%2C00080060")


def _data(root: Path) -> tuple[Path, dict]:
    from gateway.ingest.clinical import import_clinical
    from gateway.ingest.importer import run_import
    from gateway.synth import write_cohort
    cohort = write_cohort(root / "cohort", patients=6, seed=7, ct_slices=12, xr_size=256)
    data = root / "data"
    archive = open_local(Settings().replace(data_dir=data))
    try:
        run_import(archive, [cohort.root], workers=2, progress=False)
        import_clinical(archive, cohort.xlsx)
        first = archive.search(Query(Level.INSTANCE)).matches[0]
    finally:
        archive.close()
    uids = {k: first[t]["Value"][0] for k, t in (("study", "0020000D"), ("series", "0020000E"),
                                                  ("sop", "00080018"))}
    return data, uids


def _paths(uids: dict) -> dict[str, tuple[str, dict]]:
    series = f"/dicomweb/studies/{uids['study']}/series/{uids['series']}"
    return {
        "study list": (STUDY_LIST, {"Accept": "application/dicom+json"}),
        "frames": (f"{series}/instances/{uids['sop']}/frames/1",
                   {"Accept": 'multipart/related; type="application/octet-stream"'}),
        "series metadata": (f"{series}/metadata", {"Accept": "application/dicom+json"}),
        "fhir search": ("/fhir/Observation?_count=20", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--interleaved", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    try:
        if args.interleaved:
            interleaved(root, args.interleaved)
        if args.rounds:
            run(root, args.seconds, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, seconds: int, rounds: int) -> None:
    data, uids = _data(root)
    shutil.copytree(data, root / "data-required")
    with ForgedIssuer(DEFAULT_AUDIENCE) as issuer:
        off = start_gateway(data, root / "logs")
        req = start_gateway(root / "data-required", root / "logs", env={
            "GATEWAY_AUTH_MODE": "required", "GATEWAY_AUTH_ISSUER": issuer.url,
            "GATEWAY_AUTH_AUDIENCE": DEFAULT_AUDIENCE, "GATEWAY_CORS_ORIGINS": "http://v.test"})
        issuer.forge.ttl = 3600
        token = issuer.forge.token("user/*.rs", sub="bench")
        results: dict[str, dict[str, list[float]]] = {}
        try:
            for _ in range(rounds):
                for name, (path, headers) in _paths(uids).items():
                    for mode, server, extra in (("off", off, {}), ("required", req,
                                                {"Authorization": f"Bearer {token}"})):
                        got = wrk(server.url + path, {**headers, **extra}, seconds=seconds)
                        results.setdefault(name, {}).setdefault(mode, []).append(got["rps"])
        finally:
            off.stop()
            req.stop()
    summary = {}
    print(f"{'endpoint':18} {'off req/s':>10} {'required':>10} {'ratio':>6} {'paired':>7}")
    for name, modes in results.items():
        o, r = max(modes["off"]), max(modes["required"])  # best of the rounds, each mode
        # each round ran off then required back to back: the median of those pairs'
        # ratios cancels the drift between rounds that best-of-each-mode does not
        paired = statistics.median(q / p for p, q in zip(modes["off"], modes["required"],
                                                          strict=True))
        summary[name] = {"off": round(o, 1), "required": round(r, 1), "ratio": round(r / o, 3),
                         "paired": round(paired, 3)}
        print(f"{name:18} {o:10.1f} {r:10.1f} {r / o:6.3f} {paired:7.3f}")
    print(json.dumps({"bench": "auth", "seconds": seconds, "rounds": rounds, **summary}))


def interleaved(root: Path, n: int) -> None:
    import time

    from gateway import close_app, create_app
    data, uids = _data(root / "inproc")
    shutil.copytree(data, root / "inproc-required")
    with ForgedIssuer(DEFAULT_AUDIENCE) as issuer:
        issuer.forge.ttl = 3600
        auth = {"Authorization": "Bearer " + issuer.forge.token("user/*.rs", sub="bench")}
        apps = {"off": create_app(Settings().replace(data_dir=data)),
                "required": create_app(Settings().replace(
                    data_dir=root / "inproc-required", auth_mode="required",
                    auth_issuer=issuer.url, auth_audience=DEFAULT_AUDIENCE,
                    cors_origins="http://v.test"))}
        clients = {mode: app.test_client() for mode, app in apps.items()}
        summary = {}
        try:
            print(f"{'endpoint (in process)':22} {'off ms':>8} {'required':>9} {'ratio':>6}")
            for name, (path, headers) in _paths(uids).items():
                times: dict[str, list[float]] = {"off": [], "required": []}
                for i in range(n + 20):
                    for mode, client in clients.items():
                        extra = auth if mode == "required" else {}
                        t0 = time.perf_counter()
                        response = client.get(path, headers={**headers, **extra})
                        response.get_data()
                        if i >= 20:  # warm-up done
                            times[mode].append(time.perf_counter() - t0)
                        assert response.status_code == 200, (mode, path, response.status_code)
                o, r = (statistics.median(times[m]) * 1000 for m in ("off", "required"))
                summary[name] = {"off_ms": round(o, 3), "required_ms": round(r, 3),
                                 "ratio": round(o / r, 3)}
                print(f"{name:22} {o:8.3f} {r:9.3f} {o / r:6.3f}")
        finally:
            for app in apps.values():
                close_app(app)
    print(json.dumps({"bench": "auth-interleaved", "n": n, **summary}))


if __name__ == "__main__":
    main()
