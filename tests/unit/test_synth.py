"""The synthetic COVID-19-AR cohort: determinism, marginals, layout, geometry and pixels."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

from gateway.synth import tables as T
from gateway.synth import write_cohort
from gateway.synth.cohort import (
    EXPLICIT_VR_LE,
    JPEG2000_LOSSLESS,
    RLE_LOSSLESS,
    build_cohort,
    every_kth,
    patient_row,
    scale_counts,
)
from gateway.synth.ct import ChestCT
from gateway.synth.dicom import IMPLEMENTATION_CLASS_UID, job_for
from gateway.synth.images import Habitus, radiograph
from gateway.synth.layout import series_dir, study_dir
from gateway.synth.render import render_study

SMALL = {"patients": 4, "seed": 0, "ct_slices": 8, "xr_size": 256}
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth-a")
    return out, write_cohort(out, workers=2, **SMALL)


@pytest.fixture(scope="module")
def headers(small) -> list[pydicom.Dataset]:
    out, _ = small
    return [pydicom.dcmread(p, stop_before_pixels=True)
            for p in sorted((out / "COVID-19-AR").rglob("*.dcm"))]


def test_same_arguments_same_bytes_whatever_the_worker_count(small, tmp_path: Path) -> None:
    out, _ = small
    again = write_cohort(tmp_path / "b", workers=1, **SMALL)
    first, second = _digest(out), _digest(tmp_path / "b")
    assert first == second
    sheets = {"clinical.csv", "clinical_imaging.csv", "COVID_19_AR_ClinicalCorrelates.xlsx"}
    assert sheets <= set(first)
    assert sum(1 for name in first if name.endswith(".dcm")) == again.instances
    other = write_cohort(tmp_path / "c", workers=1, **{**SMALL, "seed": 1})
    assert _digest(tmp_path / "c")["clinical.csv"] != first["clinical.csv"]
    assert other.patients == 4


def test_summary_counts_what_is_on_disk(small, headers) -> None:
    out, summary = small
    files = list(summary.root.rglob("*.dcm"))
    assert summary.instances == len(files) == len(headers)
    assert summary.bytes == sum(p.stat().st_size for p in files)
    assert summary.studies == len({h.StudyInstanceUID for h in headers})
    assert summary.series == len({h.SeriesInstanceUID for h in headers})
    assert summary.ct_studies == len({h.StudyInstanceUID for h in headers if h.Modality == "CT"})
    assert summary.xr_studies == summary.studies - summary.ct_studies
    assert summary.patients == len(list(summary.root.iterdir())) == 4
    assert summary.xlsx.exists() and summary.clinical_csv.parent == out


def test_marginals_at_105_are_the_collections() -> None:
    cohort = build_cohort(105)
    patients = cohort.patients
    assert Counter(p.sex for p in patients) == {"M": 53, "F": 52}
    assert Counter(p.race for p in patients) == T.RACE_AT_105
    assert min(p.age for p in patients) == 19 and max(p.age for p in patients) == 91
    assert all(patient_row(p)["covid_test_positive"] == "Y" for p in patients)
    modalities = Counter(s.modality for s in cohort.studies)
    assert len(cohort.studies) == 256
    assert modalities["CT"] == 23 and modalities["DX"] + modalities["CR"] == 233
    assert all(any(s.modality != "CT" for s in p.studies) for p in patients)
    assert all((p.icu_admits > 0) == p.icu_admit for p in patients)
    syntaxes = Counter(s.series[0].syntax for s in cohort.studies if s.modality != "CT")
    assert all(len({x.syntax for x in s.series}) == 1 for s in cohort.studies)
    assert syntaxes[RLE_LOSSLESS] + syntaxes[JPEG2000_LOSSLESS] == pytest.approx(233 / 4, abs=1)
    assert abs(syntaxes[RLE_LOSSLESS] - syntaxes[JPEG2000_LOSSLESS]) <= 1


def test_body_measures_agree_and_zip_prefixes_are_arkansas() -> None:
    for p in build_cohort(105).patients:
        assert 716 <= int(p.zip) <= 729
        if p.bmi is not None:
            assert p.bmi == pytest.approx(703 * p.weight_lb / p.height_in ** 2, abs=0.01)
            text = p.height_text
            inches = text if isinstance(text, int) else int(text[0]) * 12 + int(text[3:-1])
            assert inches == p.height_in


def test_pa_and_lateral_has_a_pa_and_a_lateral_series() -> None:
    studies = [s for s in build_cohort(105).studies if s.description == "XR CHEST PA AND LATERAL"]
    assert studies
    for s in studies:
        assert [(x.number, x.views) for x in s.series] == [(1, ("PA",)), (2, ("LL",))]


def test_scaled_counts_are_exact() -> None:
    assert scale_counts(T.RACE_AT_105, 105) == T.RACE_AT_105
    assert sum(scale_counts(T.RACE_AT_105, 20).values()) == 20
    assert scale_counts(T.SEX_AT_105, 20) == {"M": 10, "F": 10}


def test_ct_fraction_half_gives_every_second_patient() -> None:
    assert every_kth(20, 10) == [i % 2 == 1 for i in range(20)]
    cohort = build_cohort(20, ct_fraction=0.5, ct_slices=120)
    ct = [p.index for p in cohort.patients if any(s.modality == "CT" for s in p.studies)]
    assert ct == list(range(1, 20, 2))
    assert all(s.instances == 120 for s in cohort.studies if s.modality == "CT")


def test_patient_ids_and_uids(headers) -> None:
    ids = {h.PatientID for h in headers}
    assert len(ids) == 4
    for h in headers:
        assert re.fullmatch(r"COVID-19-AR-\d{8}", h.PatientID)
        assert str(h.PatientName) == h.PatientID
        for uid in (h.StudyInstanceUID, h.SeriesInstanceUID, h.SOPInstanceUID):
            assert len(uid) <= 64 and UID_RE.match(uid), uid


def test_meta_and_de_identification(headers) -> None:
    for h in headers:
        assert h.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert h.file_meta.ImplementationVersionName == "TCIAGW_SYNTH"
        assert h.file_meta.MediaStorageSOPInstanceUID == h.SOPInstanceUID
        assert h.PatientIdentityRemoved == "YES"
        assert h.LongitudinalTemporalInformationModified == "MODIFIED"
        assert h.PatientBirthDate == "" and re.fullmatch(r"\d{3}Y", h.PatientAge)
        codes = [c.CodeValue for c in h.DeidentificationMethodCodeSequence]
        assert codes[0] == "113100" and "113107" in codes
        assert h.BodyPartExamined == "CHEST" and h.ClinicalTrialProtocolID == "COVID-19-AR"
        ctp = h.private_block(0x0013, "CTP")  # TCIA's CTP block names the collection
        assert ctp[0x10].value == ctp[0x11].value == "COVID-19-AR"
        assert re.fullmatch(r"\d{8}", ctp[0x13].value) and ctp[0x12].value


def test_nbia_layout(small, headers) -> None:
    out, _ = small
    for path in sorted((out / "COVID-19-AR").rglob("*.dcm")):
        h = pydicom.dcmread(path, stop_before_pixels=True)
        series, study, patient = path.parent.name, path.parent.parent.name, path.parents[2].name
        date = datetime.strptime(h.StudyDate, "%Y%m%d")
        assert patient == h.PatientID
        assert study == (f"{date:%m-%d-%Y}-{h.StudyID}-{h.StudyDescription}-"
                         f"{h.StudyInstanceUID[-5:]}")
        assert series == f"{h.SeriesNumber}.000000-{h.SeriesDescription}-{h.SeriesInstanceUID[-5:]}"
        assert path.name == f"1-{h.InstanceNumber:03d}.dcm"


def test_imaging_rows_match_dicom_studies(small, headers) -> None:
    out, _ = small
    cohort = build_cohort(**SMALL)
    diagnosis = {p.patient_id: p.diagnosis for p in cohort.patients}
    with (out / "clinical_imaging.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    from_sheet: Counter[tuple[str, ...]] = Counter()
    for r in rows:
        diagnosed = diagnosis[r["patient_id"]]
        when = diagnosed + timedelta(hours=float(r["diagnosis_to_imaging_time_hrs"]))
        assert (when.date() - diagnosed.date()).days == int(r["diag_to_img_study_days"])
        from_sheet[(r["patient_id"], r["image_study_description"], r["study_modality"],
                    f"{when:%Y%m%d%H%M%S}")] += 1
    studies = {h.StudyInstanceUID: h for h in headers}
    from_dicom = Counter((h.PatientID, h.StudyDescription, h.Modality, h.StudyDate + h.StudyTime)
                         for h in studies.values())
    assert from_sheet == from_dicom and len(rows) == len(studies)


def test_ct_series_geometry(headers) -> None:
    ct = sorted((h for h in headers if h.Modality == "CT"), key=lambda h: h.InstanceNumber)
    assert len(ct) == 8 and len({h.FrameOfReferenceUID for h in ct}) == 1
    iop = np.array(ct[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    along = [float(np.dot(normal, np.array(h.ImagePositionPatient, float))) for h in ct]
    steps = np.diff(along)
    assert np.allclose(np.abs(steps), float(ct[0].SliceThickness), atol=1e-6)
    assert np.allclose(steps, steps[0])  # evenly spaced, one direction
    assert all(float(h.SliceLocation) == float(h.ImagePositionPatient[2]) for h in ct)
    assert [h.Rows for h in ct] == [512] * 8 and float(ct[0].RescaleIntercept) == -1024
    assert list(ct[0].WindowCenter) == [-600, 40]


def _ct_lung_means(finding, zone: slice) -> tuple[float, float]:
    clear = ChestCT(32, 10.0, 0.7, T.CT_FINDINGS[0][0], Habitus.of(30, "M"),
                    np.random.default_rng(5))
    sick = ChestCT(32, 10.0, 0.7, finding, Habitus.of(30, "M"), np.random.default_rng(5))
    a = b = n = 0.0
    for i in range(*zone.indices(32)):
        mask = clear.lung_mask(i)
        a, b, n = a + clear.hu(i)[mask].sum(), b + sick.hu(i)[mask].sum(), n + mask.sum()
    return a / n, b / n


def test_ct_opacity_where_the_findings_say() -> None:
    finding = next(f for f in T.CT_FINDINGS[2] if f.zones == ("mid", "lower"))
    clear_low, sick_low = _ct_lung_means(finding, slice(20, 27))
    clear_up, sick_up = _ct_lung_means(finding, slice(2, 8))
    assert clear_low < -750
    assert sick_low - clear_low > 60  # ground glass in the mid/lower lungs
    assert abs(sick_up - clear_up) < 10  # upper zones untouched


def test_radiograph_opacity_in_the_lower_zones() -> None:
    bilateral = T.XR_FINDINGS[2][0]
    assert "mid and lower" in bilateral.text
    images = [radiograph("AP", 512, 435, f, Habitus.of(30, "M"), "M", np.random.default_rng(9))
              for f in (T.XR_FINDINGS[0][0], bilateral)]
    lower = (slice(300, 345), slice(60, 150))  # right lower lung field
    upper = (slice(80, 110), slice(80, 150))
    clear, sick = (img.astype(float) for img in images)
    assert sick[lower].mean() - clear[lower].mean() > 100
    assert abs(sick[upper].mean() - clear[upper].mean()) < 20


def test_compressed_radiographs_are_lossless(small, tmp_path: Path) -> None:
    out, _ = small
    cohort = build_cohort(**SMALL)
    seen = set()
    for p in cohort.patients:
        for s in p.studies:
            syntax = s.series[0].syntax
            if syntax == EXPLICIT_VR_LE:
                continue
            seen.add(syntax)
            path = series_dir(study_dir(out / "COVID-19-AR", p, s), s.series[0]) / "1-001.dcm"
            stored = pydicom.dcmread(path)
            assert stored.file_meta.TransferSyntaxUID == syntax
            assert stored["PixelData"].is_undefined_length
            raw = stored.PixelData
            assert raw[:8] == b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # empty Basic Offset Table
            plain = replace(s, series=tuple(replace(x, syntax=EXPLICIT_VR_LE) for x in s.series))
            render_study(job_for(tmp_path, 0, SMALL["xr_size"], 512, p, plain, cohort.marks))
            native_path = series_dir(study_dir(tmp_path, p, plain), s.series[0]) / "1-001.dcm"
            native = pydicom.dcmread(native_path)
            assert np.array_equal(stored.pixel_array, native.pixel_array)
    assert seen == {RLE_LOSSLESS, JPEG2000_LOSSLESS}
