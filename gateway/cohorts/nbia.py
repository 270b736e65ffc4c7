"""The NBIA Data Retriever's download layout for a cohort: folder names, ``metadata.csv``,
``<Collection>/LICENSE`` and ``CITATION`` (docs/cohorts.md), as text from index rows.

The same names and columns as the synthetic twin's folders (gateway/synth/layout.py), so a
cohort download and a twin look alike to every tool that reads one: ``<Collection>/<PatientID>/
<MM-DD-YYYY>-<StudyID|NA>-<StudyDescription>-<5>/<SeriesNumber>.000000-<SeriesDescription|NA>-
<5>/1-<NNN>.dcm``.
"""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..synth.layout import (DESCRIPTION_CHARS, LICENSE_NAME, METADATA_COLUMNS, LicenseFacts,
                            instance_name)

CITATION_NAME = "CITATION"
__all__ = ["CITATION_NAME", "LICENSE_NAME", "METADATA_COLUMNS", "SeriesRow", "citation_text",
           "instance_name", "licence_facts", "licence_text", "metadata_csv", "series_folder"]


@dataclass(frozen=True)
class SeriesRow:
    """What the layout and ``metadata.csv`` need of one series, from the index."""

    collection: str
    patient_id: str
    study_uid: str
    study_date: str | None     # DICOM DA
    study_id: str | None
    study_description: str | None
    series_uid: str
    series_number: int | None
    series_description: str | None
    modality: str | None
    manufacturer: str | None
    sop_class_uid: str
    num_instances: int
    size: int


def _clean(text: str | None) -> str:
    kept = re.sub(r"[^A-Za-z0-9 ._,()+'&-]", "", text or "")
    return kept[:DESCRIPTION_CHARS].strip(" .")


def _folder_part(text: str) -> str:
    """A collection or patient id as one path part (no separators, never empty or dots)."""
    kept = re.sub(r"[/\\\x00-\x1f]", "_", text).strip(" .")
    return kept or "NA"


def _day(date: str | None) -> str:
    if date and len(date) == 8 and date.isdigit():
        return f"{date[4:6]}-{date[6:8]}-{date[:4]}"
    return "NA"


def series_folder(row: SeriesRow) -> str:
    study = (f"{_day(row.study_date)}-{_clean(row.study_id) or 'NA'}-"
             f"{_clean(row.study_description)}-{row.study_uid[-5:]}")
    number = "NA" if row.series_number is None else f"{row.series_number}.000000"
    series = f"{number}-{_clean(row.series_description) or 'NA'}-{row.series_uid[-5:]}"
    return f"{_folder_part(row.collection)}/{_folder_part(row.patient_id)}/{study}/{series}"


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


def metadata_csv(rows: list[tuple[SeriesRow, str]], dois: dict[str, str],
                 downloaded: datetime, sop_names: dict[str, str]) -> bytes:
    """One row per series (the Retriever's 17 columns, CRLF); ``rows`` pairs each series with
    its folder; the timestamps step from the cohort's creation, so the bytes never change."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(METADATA_COLUMNS)
    for k, (row, folder) in enumerate(rows):
        doi = dois.get(row.collection)
        writer.writerow([
            row.series_uid, row.collection, "NO", f"https://doi.org/{doi}" if doi else "",
            row.patient_id, row.study_uid, row.study_description or "", _day(row.study_date),
            row.series_description or "NA", row.manufacturer or "", row.modality or "",
            sop_names.get(row.sop_class_uid, ""), row.sop_class_uid, row.num_instances,
            _size(row.size), "./" + folder,
            (downloaded + timedelta(milliseconds=137 * k)).isoformat(timespec="milliseconds")])
    return out.getvalue().encode()


def licence_facts(collection: str) -> LicenseFacts | None:
    """The collection's licence and citation from idc-index-data's ``collections_index``
    (installed with the package: nothing is fetched), or None for a collection it lacks."""
    try:
        from pathlib import Path

        import idc_index_data
        import pyarrow.parquet as pq
    except ImportError:
        return None
    cid = collection.lower().replace("-", "_").replace(" ", "_")
    table = pq.read_table(Path(idc_index_data.__file__).parent / "collections_index.parquet",
                          filters=[("collection_id", "=", cid)])
    rows = table.to_pylist()
    if not rows or not rows[0].get("sources"):
        return None
    source = rows[0]["sources"][0]
    licence = source["license"]
    return LicenseFacts(licence["license_short_name"], licence["license_long_name"],
                        licence["license_url"], source["source_doi"], source["citation"])


def plain(citation: str) -> str:
    """A citation as text (its HTML tags and entities gone)."""
    return html.unescape(re.sub(r"<[^>]+>", "", citation)).replace("\n", " ")


def licence_text(collection: str, facts: LicenseFacts | None) -> bytes:
    if facts is None:
        return (f"{collection}\n\nThe licence of this collection is not known to this gateway: "
                "ask the archive's operator before using these images.\n").encode()
    return (f"{facts.long_name} ({facts.short_name})\n{facts.url}\n\n"
            f"Data usage: these images are published under the {facts.long_name}. Users must "
            "abide by the TCIA Data Usage Policy and the licence terms, and must cite the data "
            f"set in any publication that uses it:\n\n{plain(facts.citation)}\n\n"
            f"https://doi.org/{facts.doi}\n").encode()


def citation_text(cohort_id: str, created: str, source: str,
                  facts: dict[str, LicenseFacts | None]) -> bytes:
    """How to cite the cohort: each collection's data citation with its DOI."""
    lines = [f"Cohort {cohort_id}, made {created} by tcia-gateway from: {source}", "",
             "Please cite every collection these images come from:", ""]
    for collection, found in facts.items():
        if found is None:
            lines += [f"{collection}: citation not known", ""]
        else:
            lines += [f"{collection} ({found.short_name}): {plain(found.citation)}",
                      f"DOI: https://doi.org/{found.doi}", ""]
    return "\n".join(lines).encode()
