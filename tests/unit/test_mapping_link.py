"""Linking imaging-sheet rows to DICOM studies: by modality and day offset, never by guesswork."""
from __future__ import annotations

import datetime as dt

from gateway.mapping.link import Study, link


def study(uid: str, day: str, time: str, description: str, modality: str) -> Study:
    return Study(uid, dt.date.fromisoformat(day), time, description, frozenset({modality}))


def row(days: int, hours: float, description: str, modality: str) -> dict:
    return {"diag_to_img_study_days": str(days), "diagnosis_to_imaging_time_hrs": str(hours),
            "image_study_description": description, "study_modality": modality}


STUDIES = [study("1.1", "2019-05-01", "090000", "XR CHEST AP PORTABLE", "DX"),
           study("1.2", "2019-05-03", "080000", "XR CHEST AP PORTABLE", "DX"),
           study("1.3", "2019-05-03", "200000", "CT CHEST WITHOUT CONTRAST", "CT"),
           study("1.4", "2019-05-06", "100000", "XR CHEST PA AND LATERAL", "CR")]


def test_rows_find_their_studies_and_the_diagnosis_date():
    rows = [(1, row(0, 9, "XR CHEST AP PORTABLE", "DX")), (2, row(2, 56, "XR CHEST AP PORTABLE", "DX")),
            (3, row(2, 68, "CT CHEST WITHOUT CONTRAST", "CT")), (4, row(5, 130, "XR CHEST PA AND LATERAL", "CR"))]
    found = link(rows, STUDIES)
    assert found.diagnosis == dt.date(2019, 5, 1)
    assert {n: s.uid for n, s in found.by_row.items()} == {1: "1.1", 2: "1.2", 3: "1.3", 4: "1.4"}


def test_a_row_without_a_fitting_study_stays_unlinked():
    rows = [(1, row(0, 9, "XR CHEST AP PORTABLE", "DX")), (2, row(2, 56, "XR CHEST AP PORTABLE", "DX")),
            (3, row(9, 220, "XR CHEST AP ONLY", "DX")), (4, row(2, 60, "CT CHEST", "MR"))]
    found = link(rows, STUDIES)
    assert found.diagnosis == dt.date(2019, 5, 1)
    assert {n: s.uid for n, s in found.by_row.items()} == {1: "1.1", 2: "1.2"}


def test_ambiguous_evidence_links_nothing():
    """One DX row, two DX studies two days apart: either could be 'day 0'; no guess."""
    found = link([(1, row(0, 9, "XR CHEST AP PORTABLE", "DX"))], STUDIES[:2])
    assert found.by_row == {} and found.diagnosis is None


def test_no_studies_no_links():
    found = link([(1, row(0, 1, "XR", "DX"))], [])
    assert found.by_row == {} and found.diagnosis is None


def test_blank_offsets_are_not_linked():
    found = link([(1, {"study_modality": "DX"})], STUDIES)
    assert found.by_row == {}
