"""BACKEND=idc: index scale and cold/warm series from an S3 bucket in IDC's layout.

    python bench/idc_bench.py [--large-data DIR] [--requests N] [--reps N] [--ct-size PX]

1. QIDO study searches (OHIF's study list, by PatientID, by date range, by modality, by
   collection) and FHIR ImagingStudy by patient, p50 over N requests on one keep-alive
   connection, against an index of COVID-19-AR's size (the real COVID-19-AR rows of
   idc-index-data) and a large one (``--large-data``: a data dir whose index holds the full
   IDC index, e.g. made once by starting BACKEND=idc without IDC_COLLECTIONS; without it,
   the collections of ~250,000 series are loaded, about a minute here). SQLite only.
2. A synthetic COVID-19-AR twin in IDC's layout on SeaweedFS: series metadata cold (first
   request: listing + GETs + parse + index) and warm, retrieve of the same series warm and
   cold (a fresh gateway whose first read is the retrieve), each cold read paired in its
   round with a bare boto3 download of the same objects (listing + GETs on 8 threads). A
   fresh gateway has answered OHIF's study list (no bucket call) before its timed cold read,
   as a viewer always lists studies before it opens one. A third fresh gateway per round
   times the metadata of the series' first-listed instance alone (served once its object
   is indexed, while the rest arrives). Before each timed read the dirty
   pages are written out (``os.sync``), so neither side of a pair pays for the writeback of
   the round before, and each cold gateway's cache is removed with it.
Prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pydicom
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.config import Settings  # noqa: E402
from tests.support.idc import idc_env, scan, serve, synth_twin, upload, write_index  # noqa: E402
from tests.support.procs import start_gateway  # noqa: E402
from tests.support.seaweed import start_seaweed  # noqa: E402

JSON = {"Accept": "application/dicom+json"}
# the bytes as stored (and as in the bucket): what a bare download of the objects gives
DICOM_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def p50(fn: Callable[[], Any], n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def queries(session: requests.Session, url: str, patient: str, collection: str) -> dict:
    def get(path: str, **params: Any) -> Callable[[], Any]:
        def call() -> Any:
            accept = {"Accept": "application/fhir+json"} if path.startswith("/fhir") else JSON
            r = session.get(url + path, params=params, headers=accept, timeout=60)
            assert r.status_code in (200, 204), (path, r.status_code, r.text[:200])
            return r
        return call
    return {
        "OHIF study list": get("/dicomweb/studies", limit=101, offset=0, fuzzymatching="false",
                               includefield="00081030,00080060"),
        "by PatientID": get("/dicomweb/studies", PatientID=patient),
        "by date range": get("/dicomweb/studies", StudyDate="20120101-20120131", limit=101),
        "by modality": get("/dicomweb/studies", ModalitiesInStudy="CT", limit=101),
        "by collection": get(f"/collections/{collection}/dicomweb/studies", limit=101),
        "FHIR ImagingStudy by patient": get("/fhir/ImagingStudy", patient=patient),
    }


def index_rows(data_dir: Path, settings: Settings, n: int) -> tuple[dict[str, float], int]:
    from gateway.archive.local.index import make_engine
    from sqlalchemy import text
    engine = make_engine(settings.replace(data_dir=data_dir).index_url)
    with engine.connect() as conn:
        series = conn.execute(text("SELECT count(*) FROM series")).scalar_one()
        patient = conn.execute(text(
            "SELECT p.patient_id FROM patients p JOIN studies s ON s.patient_pk = p.pk "
            "WHERE s.collection = 'COVID-19-AR' LIMIT 1")).scalar_one()
    engine.dispose()
    live = serve(settings.replace(data_dir=data_dir))
    app = next(live)
    try:
        with requests.Session() as session:
            out = {k: p50(fn, n) for k, fn in queries(session, app.url, patient,
                                                      "COVID-19-AR").items()}
    finally:
        next(live, None)
    return out, series


STUDY_COLUMNS = ("StudyInstanceUID, any_value(PatientID), any_value(StudyDate), "
                 "any_value(StudyDescription), string_agg(DISTINCT Modality, '\\'), count(*), "
                 "sum(instanceCount)")
DUCK = {  # the same searches as SQL over the parquet in place (DuckDB), one row per study
    "OHIF study list": f"SELECT {STUDY_COLUMNS} FROM idx GROUP BY 1 LIMIT 101",
    "by PatientID": f"SELECT {STUDY_COLUMNS} FROM idx WHERE PatientID = $p GROUP BY 1",
    "by date range": f"SELECT {STUDY_COLUMNS} FROM idx WHERE StudyDate BETWEEN '2012-01-01' "
                     "AND '2012-01-31' GROUP BY 1 LIMIT 101",
    "by modality": f"SELECT {STUDY_COLUMNS} FROM idx GROUP BY 1 HAVING bool_or(Modality = 'CT') "
                   "LIMIT 101",
    "by collection": f"SELECT {STUDY_COLUMNS} FROM idx WHERE collection_id = 'covid_19_ar' "
                     "GROUP BY 1 LIMIT 101",
}
SEARCH = {  # the gateway's own searches in process (no HTTP), the same five
    "OHIF study list": {}, "by PatientID": {"PatientID": "$p"},
    "by date range": {"StudyDate": "20120101-20120131"}, "by modality": {"ModalitiesInStudy": "CT"},
    "by collection": None,
}


def in_place(data_dir: Path, patient: str, n: int) -> dict[str, dict[str, float]]:
    """Index tables (archive.search, in process) vs DuckDB on the parquet, full size."""
    import duckdb
    from gateway.archive.local import open_local
    from gateway.archive.protocol import Level, Query
    from gateway.archive.scope import Scope
    from gateway.backends.idc.catalog import default_index
    con = duckdb.connect()
    con.execute(f"CREATE VIEW idx AS SELECT * FROM read_parquet('{default_index()}')")
    archive = open_local(Settings().replace(data_dir=data_dir), sweep=False)
    out: dict[str, dict[str, float]] = {}
    try:
        for name, sql in DUCK.items():
            args = {"p": patient} if "$p" in sql else {}
            duck = p50(lambda: con.execute(sql, args).fetchall(), n)  # noqa: B023
            filters = {k: patient if v == "$p" else v for k, v in (SEARCH[name] or {}).items()}
            scope = Scope(collections=frozenset({"COVID-19-AR"})) if SEARCH[name] is None \
                else None
            query = Query(Level.STUDY, filters=filters, limit=101)
            target = archive.scoped(scope) if scope else archive
            index = p50(lambda: target.search(query), n)  # noqa: B023
            out[name] = {"index tables": index, "duckdb on parquet": duck}
    finally:
        archive.close()
    return out


def load(data_dir: Path, collections: str) -> float:
    from gateway.backends.idc import open_idc
    t0 = time.monotonic()
    open_idc(Settings().replace(data_dir=data_dir, backend="idc",
                                idc_collections=collections)).close()
    return time.monotonic() - t0


def large_collections(limit: int = 250_000) -> str:
    """Collections (COVID-19-AR among them) adding up to about ``limit`` series."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from gateway.backends.idc.catalog import default_index
    ids = pq.read_table(default_index(), columns=["collection_id"]).column("collection_id")
    counts = sorted(pc.value_counts(ids).to_pylist(), key=lambda c: -c["counts"])
    chosen, total = ["covid_19_ar"], 461
    for c in counts:
        if c["values"] != "covid_19_ar" and total + c["counts"] <= limit:
            chosen.append(c["values"])
            total += c["counts"]
    return ",".join(chosen)


def bare_download(client: Any, bucket: str, folder: str, workers: int = 8) -> int:
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=folder + "/")
            .get("Contents", [])]
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return sum(ex.map(lambda k: len(client.get_object(Bucket=bucket, Key=k)["Body"].read()),
                          keys))


def _cold(store: Any, work: Path, bucket: str, index: Path, url_path: str,
          first: Callable[[requests.Session, str], Any]) -> tuple[float, Any]:
    """A fresh gateway under gunicorn (`serve`, 2 workers: the real entry), its cache empty,
    that has answered OHIF's study list (no bucket call); then ``first`` of the series timed.
    The server, session and URL are returned for warm reads."""
    data = Path(tempfile.mkdtemp(prefix="cold-", dir=work))
    server = start_gateway(data, work / "logs", workers=2, env=idc_env(store, bucket, index))
    session = requests.Session()
    assert session.get(server.url + "/dicomweb/studies", headers=JSON).status_code == 200
    settle()
    t0 = time.perf_counter()
    first(session, server.url + url_path)
    return (time.perf_counter() - t0) * 1000, (server, session, server.url + url_path)


def settle() -> None:
    """Dirty pages of the round before written out first: neither side of a pair pays the
    other's writeback (a cold read writes its series to the cache, a bare download nothing)."""
    os.sync()
    time.sleep(0.2)


def _stop(server: Any) -> None:
    """A cold gateway gone with its cache: a run leaves no series behind to crowd the
    page cache of the next rounds."""
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


def _metadata(s: requests.Session, url: str) -> None:
    r = s.get(url + "/metadata", headers=JSON)
    assert r.status_code == 200, r.text[:200]


def _retrieve(s: requests.Session, url: str) -> None:
    with s.get(url, headers={"Accept": DICOM_AS_STORED},
               stream=True) as r:
        assert r.status_code == 200, r.text[:200]
        for _chunk in r.iter_content(1 << 20):
            pass


def s3_part(reps: int, ct_size: int, work: Path) -> dict[str, Any]:
    """Rounds of: bare download, cold metadata (then warm reads), bare download, cold
    retrieve; each cold read on a fresh gateway; ratios paired within a round."""
    store = start_seaweed(work / "logs")
    try:
        twin = synth_twin(work / "twin", "COVID-19-AR", patients=2, ct_size=ct_size)
        series = scan(twin, "COVID-19-AR")
        bucket = store.create_bucket("idc-bench")
        upload(store, bucket, list(series.values()))
        index = write_index(list(series.values()), work / "index.parquet")
        big = max(series.values(), key=lambda s: len(s.objects))
        folder = big.row["crdc_series_uuid"]
        path = (f"/dicomweb/studies/{big.row['StudyInstanceUID']}/series/"
                f"{big.row['SeriesInstanceUID']}")
        first = sorted(big.objects)[0]  # listed first, so fetched first
        first_path = (f"{path}/instances/"
                      f"{pydicom.dcmread(big.objects[first], stop_before_pixels=True).SOPInstanceUID}")
        client = store.client(max_pool_connections=16)
        bare_download(client, bucket, folder)  # connections and SeaweedFS's caches warm
        rows: dict[str, list[float]] = {k: [] for k in (
            "bare boto3 ms", "cold metadata ms", "warm metadata ms", "warm retrieve ms",
            "bare boto3 (2) ms", "cold retrieve ms", "cold first instance metadata ms",
            "cold metadata / bare", "cold retrieve / bare")}
        for _ in range(reps):
            settle()
            rows["bare boto3 ms"].append(_timed(lambda: bare_download(client, bucket, folder)))
            cold, (server, s, url) = _cold(store, work, bucket, index, path, _metadata)
            rows["cold metadata ms"].append(cold)
            rows["warm metadata ms"].append(p50(lambda: _metadata(s, url), 10))  # noqa: B023
            rows["warm retrieve ms"].append(p50(lambda: _retrieve(s, url), 5))  # noqa: B023
            _stop(server)
            settle()
            rows["bare boto3 (2) ms"].append(_timed(lambda: bare_download(client, bucket,
                                                                          folder)))
            cold, (server, s, url) = _cold(store, work, bucket, index, path, _retrieve)
            rows["cold retrieve ms"].append(cold)
            _stop(server)
            cold, (server, s, url) = _cold(store, work, bucket, index, first_path, _metadata)
            rows["cold first instance metadata ms"].append(cold)
            _stop(server)
            rows["cold metadata / bare"].append(rows["cold metadata ms"][-1]
                                                / rows["bare boto3 ms"][-1])
            rows["cold retrieve / bare"].append(rows["cold retrieve ms"][-1]
                                                / rows["bare boto3 (2) ms"][-1])
        out: dict[str, Any] = {"instances": len(big.objects)}
        out.update({k: statistics.median(v) for k, v in rows.items()})
        out["rounds"] = reps
        out["per round"] = {k: [round(x, 2) for x in v] for k, v in rows.items() if "/" in k}
        return out
    finally:
        store.close()


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large-data", type=Path, help="data dir with the full IDC index loaded")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ct-size", type=int, default=64)
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--skip-index", action="store_true", help="only the bucket part")
    ap.add_argument("--duckdb", action="store_true", help="index tables vs DuckDB in place")
    ap.add_argument("--pg", nargs=2, metavar=("SMALL_URL", "LARGE_URL"),
                    help="the query table on PostgreSQL databases loaded already")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idc-bench-"))
    (work / "logs").mkdir()
    result: dict[str, Any] = {}
    if not args.skip_index:
        small = work / "small"
        result["load COVID-19-AR s"] = round(load(small, "COVID-19-AR"), 2)
        large, chosen = args.large_data, ""
        if large is None:
            large, chosen = work / "large", large_collections()
            result["load large s"] = round(load(large, chosen), 2)
        base = Settings().replace(backend="idc")
        small_s = base.replace(idc_collections="COVID-19-AR")
        large_s = base.replace(idc_collections=chosen)
        if args.pg:
            small_s = small_s.replace(database_url=args.pg[0])
            large_s = large_s.replace(database_url=args.pg[1])
        small_p50, small_n = index_rows(small, small_s, args.requests)
        large_p50, large_n = index_rows(large, large_s, args.requests)
        print(f"| query (p50 ms) | COVID-19-AR ({small_n:,} series) | large ({large_n:,} series) "
              f"| ratio |\n|---|---|---|---|")
        for k in small_p50:
            print(f"| {k} | {small_p50[k]:.1f} | {large_p50[k]:.1f} | "
                  f"{large_p50[k] / small_p50[k]:.2f}x |")
        result.update(small=small_p50, large=large_p50, series=[small_n, large_n])
        if args.duckdb:
            patient = "COVID-19-AR-16406488"
            table = in_place(large, patient, args.requests)
            result["in place"] = table
            print("\n| full index, in process (p50 ms) | index tables | DuckDB on the parquet |\n"
                  "|---|---|---|")
            for k, v in table.items():
                print(f"| {k} | {v['index tables']:.2f} | {v['duckdb on parquet']:.2f} |")
    if not args.skip_s3:
        s3 = s3_part(args.reps, args.ct_size, work)
        result["s3"] = s3
        print(f"\n| series of {s3['instances']} instances, median of {s3['rounds']} rounds "
              f"| ms |\n|---|---|")
        for k, v in s3.items():
            if k not in ("instances", "rounds", "per round"):
                print(f"| {k} | {v:.2f}{'x' if '/' in k else ''} |")
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
