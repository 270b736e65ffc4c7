"""A local IDC: synthetic twins in NCI Imaging Data Commons' bucket layout on SeaweedFS, and a
series index of ``idc_index``'s schema made from the same files.

IDC's layout: one folder per series, ``<crdc_series_uuid>/<crdc_instance_uuid>.dcm``; the
index (``idc-index-data``'s ``idc_index.parquet``) has one row per series. The UUIDs here are
UUIDv5 of the DICOM UIDs (IDC's are random; only the layout matters).
"""
from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pydicom

from gateway.config import Settings
from tests.support.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed

REPO = Path(__file__).resolve().parents[2]
NS = uuid.UUID("5d0c1e2a-7b3f-4c1e-9a51-1dc0ffee0016")


def collection_id(name: str) -> str:
    """IDC's id of a collection name (COVID-19-AR → covid_19_ar)."""
    return name.lower().replace("-", "_").replace(" ", "_")


def synth_twin(out: Path, collection: str, patients: int = 2, *, xr_size: int = 64,
               ct_size: int = 64) -> Path:
    """``synth OUT --collection NAME --patients N --xr-size 64 --ct-size 64`` (the real CLI)."""
    subprocess.run([sys.executable, "-m", "gateway", "synth", str(out), "--collection",
                    collection, "--patients", str(patients), "--xr-size", str(xr_size),
                    "--ct-size", str(ct_size)], check=True, cwd=REPO, capture_output=True,
                   timeout=300)
    return out


@dataclass
class IdcSeries:
    row: dict[str, Any]
    objects: dict[str, Path] = field(default_factory=dict)  # bucket key → file uploaded


def _attr(ds: Any, name: str) -> str | None:
    value = ds.get(name)
    return None if value in (None, "") else str(value)


def _date(value: str | None) -> str | None:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if value and len(value) >= 8 else None


def scan(root: Path, collection: str) -> dict[str, IdcSeries]:
    """Series UID → its index row and objects, for every DICOM file under ``root``."""
    found: dict[str, IdcSeries] = {}
    sizes: dict[str, int] = defaultdict(int)
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.SeriesInstanceUID)
        folder = str(uuid.uuid5(NS, uid))
        if uid not in found:
            found[uid] = IdcSeries({
                "collection_id": collection_id(collection), "analysis_result_id": None,
                "PatientID": _attr(ds, "PatientID"), "SeriesInstanceUID": uid,
                "StudyInstanceUID": str(ds.StudyInstanceUID), "source_DOI": None,
                "PatientAge": _attr(ds, "PatientAge"), "PatientSex": _attr(ds, "PatientSex"),
                "StudyDate": _date(_attr(ds, "StudyDate")),
                "StudyDescription": _attr(ds, "StudyDescription"),
                "BodyPartExamined": _attr(ds, "BodyPartExamined"),
                "Modality": _attr(ds, "Modality"), "SOPClassUID": str(ds.SOPClassUID),
                "TransferSyntaxUID": str(ds.file_meta.TransferSyntaxUID),
                "Manufacturer": _attr(ds, "Manufacturer"),
                "ManufacturerModelName": _attr(ds, "ManufacturerModelName"),
                "SeriesDate": _date(_attr(ds, "SeriesDate")),
                "SeriesDescription": _attr(ds, "SeriesDescription"),
                "SeriesNumber": _attr(ds, "SeriesNumber"), "instanceCount": 0,
                "license_short_name": "CC BY 4.0", "aws_bucket": "idc-open-data",
                "crdc_series_uuid": folder, "series_aws_url": f"s3://idc-open-data/{folder}/*",
                "series_size_MB": 0.0})
        series = found[uid]
        series.objects[f"{folder}/{uuid.uuid5(NS, str(ds.SOPInstanceUID))}.dcm"] = path
        series.row["instanceCount"] += 1
        sizes[uid] += path.stat().st_size
    for uid, series in found.items():
        series.row["series_size_MB"] = sizes[uid] / 1e6
    return found


def write_index(series: list[IdcSeries], path: Path) -> Path:
    """The rows as a parquet file of ``idc_index``'s column names and types."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [s.row for s in series]
    ints = {"instanceCount"}
    floats = {"series_size_MB"}
    schema = pa.schema([(k, pa.int64() if k in ints else pa.float64() if k in floats
                         else pa.large_string()) for k in rows[0]])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def upload(store: Seaweed, bucket: str, series: list[IdcSeries]) -> int:
    """Every object under its IDC key; how many."""
    client = store.client()
    n = 0
    for s in series:
        for key, path in s.objects.items():
            client.upload_file(str(path), bucket, key)
            n += 1
    return n


def idc_env(store: Seaweed, bucket: str, index: Path) -> dict[str, str]:
    """The same as GATEWAY_* variables, for a gateway under gunicorn."""
    return {"GATEWAY_BACKEND": "idc", "GATEWAY_IDC_BUCKET_URL": f"s3://{bucket}",
            "GATEWAY_IDC_ENDPOINT_URL": store.endpoint_url, "GATEWAY_IDC_REGION": REGION,
            "GATEWAY_IDC_ACCESS_KEY_ID": ACCESS_KEY, "GATEWAY_IDC_SECRET_ACCESS_KEY": SECRET_KEY,
            "GATEWAY_IDC_INDEX": str(index), "GATEWAY_IDC_TIMEOUT": "5"}


def idc_settings(store: Seaweed, data_dir: Path, bucket: str, index: Path,
                 **changes: Any) -> Settings:
    """BACKEND=idc on the local bucket (credentials: SeaweedFS refuses anonymous reads)."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "backend": "idc", "idc_bucket_url": f"s3://{bucket}",
        "idc_endpoint_url": store.endpoint_url, "idc_region": REGION,
        "idc_access_key_id": ACCESS_KEY, "idc_secret_access_key": SECRET_KEY,
        "idc_index": str(index)}
    return Settings().replace(**{**values, **changes})


class LiveApp:
    """The gateway's Flask app on a real loopback HTTP server in this process (threaded
    werkzeug), so a test can read the archive's own counters while clients talk HTTP."""

    def __init__(self) -> None:
        from werkzeug.serving import make_server
        self.app: Any = None
        self.server = make_server("127.0.0.1", 0, lambda env, start: self.app(env, start),
                                  threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def serve(settings: Settings) -> Iterator[LiveApp]:
    from gateway import close_app, create_app
    live = LiveApp()
    live.app = app = create_app(settings.replace(public_url=live.url))
    try:
        yield live
    finally:
        live.stop()
        close_app(app)
