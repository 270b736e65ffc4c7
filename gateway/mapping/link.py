"""Link imaging-sheet rows to the DICOM studies they describe, through the Archive protocol.

The sheet has no UIDs and no absolute dates, only days/hours since diagnosis, the description
and the modality. The shifted diagnosis date is the one that makes the most rows land on a
study of the right modality (StudyDate - days); rows are then paired with studies of that
patient on diagnosis + days, in time order, preferring equal descriptions. A row that finds no
study stays unlinked (counted by the engine), never linked to a neighbour by guesswork.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..archive.protocol import Archive, Level, Query
from .transforms import Absent, decimal, upper

UNMATCHED = Absent("unmatched", "no DICOM study of this patient fits the row")


@dataclass(frozen=True)
class Study:
    uid: str
    date: dt.date | None
    time: str
    description: str
    modalities: frozenset[str]


@dataclass
class Links:
    """Row number → study, and the diagnosis date they imply (None when nothing linked)."""

    by_row: dict[int, Study] = field(default_factory=dict)
    diagnosis: dt.date | None = None


def _first(item: dict, tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def _date(text: Any) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(text), "%Y%m%d").date()
    except (TypeError, ValueError):
        return None


def studies_of(archive: Archive, patient_id: str) -> list[Study]:
    """The patient's studies as the archive reports them (PS3.4 C.2.2.2 single-value match)."""
    if not patient_id or any(c in patient_id for c in "*?\\"):
        return []
    found = archive.search(Query(Level.STUDY, {"PatientID": patient_id}))
    out = []
    for item in found.matches:
        modalities = item.get("00080061", {}).get("Value") or []
        out.append(Study(uid=_first(item, "0020000D"), date=_date(_first(item, "00080020")),
                         time=str(_first(item, "00080030") or ""),
                         description=" ".join(str(_first(item, "00081030") or "").upper().split()),
                         modalities=frozenset(str(m).upper() for m in modalities)))
    return sorted(out, key=lambda s: (s.date or dt.date.max, s.time, s.uid))


def _days(row: dict) -> int | None:
    days = decimal(row.get("diag_to_img_study_days"), {})
    return None if isinstance(days, Absent) or days != int(days) else int(days)


def _hours(row: dict) -> float:
    hours = decimal(row.get("diagnosis_to_imaging_time_hrs"), {})
    return float("inf") if isinstance(hours, Absent) else hours


def _fits(row: dict, study: Study) -> bool:
    modality = upper(row.get("study_modality"), {})
    return isinstance(modality, Absent) or modality in study.modalities


def link(rows: Iterable[tuple[int, dict]], studies: list[Study]) -> Links:
    """Pair imaging rows with studies (pure; see the module docstring)."""
    rows = [(n, r) for n, r in rows if _days(r) is not None]
    votes: Counter[dt.date] = Counter()
    for _n, row in rows:
        wanted = " ".join(str(row.get("image_study_description") or "").upper().split())
        for study in studies:
            if study.date and _fits(row, study):
                # a fitting modality is a vote; an equal description breaks ties between dates
                days = _days(row) or 0  # rows without days were dropped above
                votes[study.date - dt.timedelta(days=days)] += 2 + (study.description == wanted)
    ranked = votes.most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return Links()  # no evidence, or two diagnosis dates explain the rows equally well
    diagnosis = ranked[0][0]
    taken: set[str] = set()
    by_row: dict[int, Study] = {}
    for n, row in sorted(rows, key=lambda item: (_days(item[1]), _hours(item[1]), item[0])):
        day = diagnosis + dt.timedelta(days=_days(row) or 0)
        wanted = " ".join(str(row.get("image_study_description") or "").upper().split())
        options = [s for s in studies if s.uid not in taken and s.date == day and _fits(row, s)]
        options.sort(key=lambda s: (s.description != wanted, s.time))
        if options:
            by_row[n] = options[0]
            taken.add(options[0].uid)
    return Links(by_row, diagnosis)


# Resolvers: values a rule takes from the linked archive rather than from a cell.
Resolver = Callable[[int, Links], Any]


def _study_uid(row_number: int, links: Links) -> Any:
    study = links.by_row.get(row_number)
    return study.uid if study else UNMATCHED


def _study_started(row_number: int, links: Links) -> Any:
    study = links.by_row.get(row_number)
    if not study or not study.date:
        return UNMATCHED
    return study.date.isoformat()  # date precision: DICOM times carry no time zone


def _diagnosis_date(_row_number: int, links: Links) -> Any:
    return links.diagnosis.isoformat() if links.diagnosis else Absent("unmatched", "no linked study")


RESOLVERS: dict[str, Resolver] = {
    "imaging_study": _study_uid, "study_started": _study_started, "diagnosis_date": _diagnosis_date,
}
