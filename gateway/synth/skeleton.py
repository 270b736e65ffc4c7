"""The real collections' series-level index, read from the installed ``idc-index-data`` package.

NCI Imaging Data Commons publishes one row per series (``idc_index.parquet``) and one per
collection (``collections_index.parquet``); the package ships both, so nothing is fetched at
run time. Only structure is taken from it (counts, codes, descriptions, dates, equipment): the
twin's patients, identifiers and pixels are synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .layout import LicenseFacts

COLLECTIONS = ("COVID-19-AR", "MIDRC-RICORD-1A", "MIDRC-RICORD-1B", "MIDRC-RICORD-1C",
               "COVID-19-NY-SBU")
COLUMNS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate", "StudyDescription",
           "BodyPartExamined", "Modality", "SOPClassUID", "TransferSyntaxUID",
           "PhotometricInterpretation", "PixelRepresentation", "Manufacturer",
           "ManufacturerModelName", "SeriesDescription", "SeriesNumber", "instanceCount",
           "PatientAge", "PatientSex")


class SkeletonError(Exception):
    """The index is missing, or does not know the collection."""


@dataclass(frozen=True)
class RealSeries:
    """One row of ``idc_index`` (the real UIDs and PatientID are only used to group)."""

    patient: str
    study: str
    series: str
    study_date: date | None
    study_description: str | None
    body_part: str | None
    modality: str
    sop_class: str
    syntax: str
    photometric: str | None
    pixel_rep: int | None
    manufacturer: str | None
    model: str | None
    description: str | None
    number: int | None
    instances: int
    age: str | None
    sex: str | None


@dataclass(frozen=True)
class Skeleton:
    name: str
    collection_id: str
    title: str
    subjects: int
    licence: LicenseFacts
    series: tuple[RealSeries, ...]


def collection_id(name: str) -> str:
    """IDC's collection_id of a TCIA collection name: ``COVID-19-AR`` -> ``covid_19_ar``."""
    return name.lower().replace("-", "_").replace(" ", "_")


def _package_dir() -> Path:
    try:
        import idc_index_data
    except ImportError as exc:  # a dependency (requirements.txt), but say what to install
        raise SkeletonError("the real index needs the idc-index-data package "
                            "(pip install idc-index-data==25.0.5)") from exc
    return Path(idc_index_data.__file__).parent


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None


def _row(r: dict) -> RealSeries:
    day = r["StudyDate"]
    return RealSeries(
        r["PatientID"], r["StudyInstanceUID"], r["SeriesInstanceUID"],
        date.fromisoformat(day) if day else None, r["StudyDescription"] or None,
        r["BodyPartExamined"] or None, r["Modality"], r["SOPClassUID"], r["TransferSyntaxUID"],
        r["PhotometricInterpretation"] or None, _int(r["PixelRepresentation"]),
        r["Manufacturer"] or None, r["ManufacturerModelName"] or None,
        r["SeriesDescription"] or None, _int(r["SeriesNumber"]), int(r["instanceCount"]),
        r["PatientAge"] or None, r["PatientSex"] or None)


def _facts(folder: Path, cid: str) -> dict:
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "collections_index.parquet",
                          filters=[("collection_id", "=", cid)])
    rows = table.to_pylist()
    if not rows:
        raise SkeletonError(f"collection {cid!r} is not in idc-index-data's collections_index")
    return rows[0]


def _series_rows(path: Path, cid: str) -> list[dict]:
    """The collection's rows, batch by batch (a third of the memory of one filtered read)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536,
                                                   columns=["collection_id", *COLUMNS]):
        mask = pc.equal(batch.column(0), cid)
        if pc.any(mask).as_py():
            rows.extend(batch.filter(mask).to_pylist())
    return rows


def read_skeleton(name: str) -> Skeleton:
    """Every series of collection ``name``, in (patient, study date, study, series) order."""
    folder, cid = _package_dir(), collection_id(name)
    facts = _facts(folder, cid)
    rows = [_row(r) for r in _series_rows(folder / "idc_index.parquet", cid)]
    rows.sort(key=lambda r: (r.patient, r.study_date or date.min, r.study,
                             r.number if r.number is not None else -1, r.series))
    source = facts["sources"][0]
    licence = source["license"]
    return Skeleton(
        name=facts["collection_name"], collection_id=cid, title=source["source_title"],
        subjects=int(facts["subjects"]),
        licence=LicenseFacts(licence["license_short_name"], licence["license_long_name"],
                             licence["license_url"], source["source_doi"], source["citation"]),
        series=tuple(rows))
