"""A cohort's series as the manifests researchers' tools read.

``tcia``: TCIA's ``.tcia`` manifest (docs/cohorts.md): six header lines, then one
SeriesInstanceUID per line, as the NBIA Data Retriever and ``tcia_utils.nbia.manifestToList``
read it (the latter drops the first six lines). ``downloadServerUrl`` names this cohort's ZIP;
``databasketId`` is ``manifest-<ms>.tcia`` from the cohort's creation time, so a manifest never
changes. ``csv``: the Data Retriever's ``metadata.csv`` (the ZIP carries the same bytes).
``json``: the series with their folders, counts and sizes.
"""
from __future__ import annotations

from datetime import datetime

import orjson

from .book import Cohort
from .zipstream import Layout

FORMATS = ("tcia", "csv", "json")


def render(kind: str, cohort: Cohort, layout: Layout, base: str) -> tuple[bytes, str, str]:
    """(body, media type, file suffix)."""
    if kind == "tcia":
        return tcia(cohort, layout, base), "application/x-tcia; charset=utf-8", ".tcia"
    if kind == "csv":
        return layout.metadata_csv, "text/csv; charset=utf-8", "-metadata.csv"
    return orjson.dumps(as_json(cohort, layout)), "application/json", ".json"


def tcia(cohort: Cohort, layout: Layout, base: str) -> bytes:
    created = datetime.fromisoformat(cohort.created.replace("Z", "+00:00"))
    lines = [f"downloadServerUrl={base}/cohorts/{cohort.id}/download",
             "includeAnnotation=true", "noOfrRetry=4",
             f"databasketId=manifest-{int(created.timestamp() * 1000)}.tcia",
             "manifestVersion=3.0", "ListOfSeriesToDownload="]
    lines += [row.series_uid for row, _ in layout.series]
    return ("\n".join(lines) + "\n").encode()


def as_json(cohort: Cohort, layout: Layout) -> dict:
    return {"cohort": cohort.summary(), "bytes": layout.length, "etag": layout.etag,
            "series": [{"SeriesInstanceUID": r.series_uid, "StudyInstanceUID": r.study_uid,
                        "PatientID": r.patient_id, "Collection": r.collection,
                        "Modality": r.modality, "SeriesNumber": r.series_number,
                        "SeriesDescription": r.series_description,
                        "NumberOfImages": r.num_instances, "FileSize": r.size,
                        "FileLocation": "./" + folder} for r, folder in layout.series]}
