"""The twin's model and its CT studies: kinds, thinning, sampling, one consistent volume."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pydicom
import pytest

from gateway.synth.dicom import job_for
from gateway.synth.model import CT_IMAGE, SC_IMAGE
from gateway.synth.render import render_study
from gateway.synth.skeleton import RealSeries, read_skeleton
from gateway.synth.twin import THIN, build_twin, kind_of


@pytest.fixture(scope="module")
def skeleton():
    return read_skeleton("COVID-19-AR")


def real(description: str | None, count: int = 100, sop: str = CT_IMAGE, number: int = 4,
         modality: str = "CT") -> RealSeries:
    return RealSeries("P", "S", "SE", None, "CT PE CHEST", None, modality, sop,
                      "1.2.840.10008.1.2", "MONOCHROME2", 0, "Philips", None, description,
                      number, count, "064Y", "M")


@pytest.mark.parametrize("description, count, sop, number, kind", [
    ("SCOUT", 8, CT_IMAGE, 1, "projection"), ("locator", 1, CT_IMAGE, 2, "projection"),
    ("Surview", 6, CT_IMAGE, 1, "projection"), (None, 2, CT_IMAGE, 4, "projection"),
    ("1MM", 621, CT_IMAGE, 4, "axial"), ("3MM VENOUS", 162, CT_IMAGE, 5, "axial"),
    ("MPR, 2MM, Coronal", 109, CT_IMAGE, 80436, "coronal"), ("SAG", 126, CT_IMAGE, 8041,
                                                             "sagittal"),
    ("MPR, MIP CORONAL, Coronal", 77, SC_IMAGE, 80438, "mip-coronal"),
    ("SAG MIPS", 213, SC_IMAGE, 80433, "mip-sagittal"), ("Cor-MIP", 110, CT_IMAGE, 8,
                                                         "mip-coronal"),
    ("Smart Prep Series", 12, CT_IMAGE, 3, "monitor"),
])
def test_series_kinds(description, count, sop, number, kind) -> None:
    assert kind_of(real(description, count, sop, number)) == kind


def test_thinned_twin_keeps_every_patient_study_and_series(skeleton) -> None:
    full = build_twin(skeleton, full=True)
    thin = build_twin(skeleton)
    assert [p.patient_id for p in full.patients] == [p.patient_id for p in thin.patients]
    pairs = list(zip(full.series, thin.series))
    assert len(pairs) == 461 == len(thin.series)
    for a, b in pairs:
        want = math.ceil(len(a.instance_uids) / THIN) if a.modality == "CT" else \
            len(a.instance_uids)
        assert (b.uid, len(b.instance_uids)) == (a.uid, want)
    assert sum(len(x.instance_uids) for x in full.series) == 31935
    assert 3000 < sum(len(x.instance_uids) for x in thin.series) < 3700


def test_sampled_twin_is_deterministic_and_holds_a_ct(skeleton) -> None:
    a, b = build_twin(skeleton, patients=6, seed=4), build_twin(skeleton, patients=6, seed=4)
    assert a == b and len(a.patients) == 6
    assert any(x.sop_class == CT_IMAGE for x in a.series)
    other = build_twin(skeleton, patients=6, seed=5)
    assert {p.patient_id for p in other.patients} != {p.patient_id for p in a.patients}


def test_clinical_rows_follow_the_studies(skeleton) -> None:
    cohort = build_twin(skeleton)
    assert Counter(p.race for p in cohort.patients) == {
        "WHITE": 40, "BLACK OR AFRICAN AMERICAN": 57, "ASIAN": 1,
        "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER": 1, "OTHER": 6}
    for p in cohort.patients:
        for s in p.studies:
            assert s.modality in s.modalities
            assert abs((s.when - p.diagnosis).total_seconds() / 3600 - s.hours) < 1e-6
            assert (s.when.date() - p.diagnosis.date()).days == s.days


@pytest.fixture(scope="module")
def ct_study(skeleton, tmp_path_factory) -> dict[str, list[pydicom.Dataset]]:
    """A rendered 'CT PE CHEST' with thin and thick axials, MPRs, MIPs and scouts."""
    cohort = build_twin(skeleton, ct_size=64, xr_size=64)
    p, s = next((p, s) for p in cohort.patients for s in p.studies
                if {"axial", "coronal", "sagittal", "mip-coronal", "projection"}
                <= {x.kind for x in s.series} and len([x for x in s.series
                                                       if x.kind == "axial"]) >= 2)
    root = tmp_path_factory.mktemp("ct") / "COVID-19-AR"
    render_study(job_for(root, cohort.seed, 64, 64, p, s, cohort.marks))
    out: dict[str, list[pydicom.Dataset]] = {}
    for x in s.series:
        folder = next(f for f in root.rglob(f"*-{x.uid[-5:]}") if f.is_dir())
        out[f"{x.kind}:{x.number}"] = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    return out


def _z(ds: pydicom.Dataset) -> float:
    return float(ds.ImagePositionPatient[2])


def test_one_frame_of_reference_and_the_planes(ct_study) -> None:
    frames = {ds.FrameOfReferenceUID for v in ct_study.values() for ds in v
              if ds.SOPClassUID == CT_IMAGE}
    assert len(frames) == 1
    for key, images in ct_study.items():
        kind = key.split(":")[0]
        ds = images[0]
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        if ds.SOPClassUID == SC_IMAGE:
            assert "ImagePositionPatient" not in ds and ds.PatientOrientation
            continue
        iop = [float(v) for v in ds.ImageOrientationPatient]
        if kind == "axial":
            assert iop == [1, 0, 0, 0, 1, 0]
        elif kind.endswith("sagittal"):
            assert iop == [0, 1, 0, 0, 0, -1]
        else:  # coronal planes and AP scouts
            assert iop[:3] in ([1, 0, 0], [0, 1, 0]) and iop[3:] == [0, 0, -1]
        if kind == "projection":
            assert list(ds.ImageType)[2] == "LOCALIZER"


def test_thin_and_thick_reconstructions_show_the_same_anatomy(ct_study) -> None:
    axials = sorted((v for k, v in ct_study.items() if k.startswith("axial")
                     and len(v) > 5), key=len)
    thick, thin = axials[0], axials[-1]
    assert len(thin) > len(thick)
    span = lambda v: (min(map(_z, v)), max(map(_z, v)))  # noqa: E731
    step = abs(_z(thick[1]) - _z(thick[0]))
    assert all(abs(a - b) <= step for a, b in zip(span(thin), span(thick)))
    thin_step = abs(_z(thin[1]) - _z(thin[0]))
    compared = 0
    for ds in thick[1:-1]:
        partner = min(thin, key=lambda t: abs(_z(t) - _z(ds)))
        if abs(_z(partner) - _z(ds)) > thin_step / 2:
            continue
        lung = lambda d: d.pixel_array.astype(float) - 1024 < -500  # noqa: E731
        a, b = lung(ds), lung(partner)
        assert (a & b).sum() / max((a | b).sum(), 1) > 0.97  # 3 thin slices off: ~0.92
        compared += 1
    assert compared >= 3


def test_coronal_mpr_cuts_the_axial_volume(ct_study) -> None:
    """A coronal image's row at height z shows what the axial slice at z shows along y."""
    coronal = next(v for k, v in ct_study.items() if k.startswith("coronal"))
    axial = max((v for k, v in ct_study.items() if k.startswith("axial")), key=len)
    middle = coronal[len(coronal) // 2]
    y = float(middle.ImagePositionPatient[1])
    row_mm = float(middle.PixelSpacing[0])
    agree = []
    for slice_ in axial[len(axial) // 4: 3 * len(axial) // 4]:
        row = int(round((float(middle.ImagePositionPatient[2]) - _z(slice_)) / row_mm))
        line = middle.pixel_array[row].astype(float) - 1024
        col_mm = float(slice_.PixelSpacing[0])
        j = int(round((y - float(slice_.ImagePositionPatient[1])) / col_mm))
        cut = slice_.pixel_array[j].astype(float) - 1024
        agree.append(np.mean((line < -500) == (cut < -500)))
    assert np.mean(agree) > 0.96  # a cut 5 rows off agrees on ~0.92


@pytest.mark.parametrize("collection", ["COVID-19-AR", "MIDRC-RICORD-1A"])
def test_series_template_writes_what_pydicom_writes(collection, tmp_path) -> None:
    """The template (fixed part encoded once) gives save_as's bytes, per syntax."""
    from gateway.synth import ctseries
    from gateway.synth.dicom import SeriesWriter, set_pixels, write_instance
    cohort = build_twin(read_skeleton(collection), ct_size=32, xr_size=64)
    seen = set()
    for p in cohort.patients:
        for s in p.studies:
            for x in s.series:
                if x.kind not in ctseries.PLANNERS or (x.syntax, x.kind) in seen:
                    continue
                seen.add((x.syntax, x.kind))
                job = job_for(tmp_path, cohort.seed, 64, 32, p, s, cohort.marks)
                writer = SeriesWriter(ctseries._header(job, x), x.syntax)
                planes = ctseries.PLANNERS[x.kind](ctseries.Scan(job), x, len(x.instance_uids))
                for i, plane in zip(range(3), planes):
                    values = ctseries._values(x, i, plane)
                    pixels = ctseries.stored(plane.hu, x.pixel_rep == 1)
                    writer.write(tmp_path / "fast.dcm", values, pixels)
                    for keyword, value in values.items():
                        setattr(writer.ds, keyword, value)
                    set_pixels(writer.ds, pixels, x.syntax)
                    write_instance(writer.ds, tmp_path / "pydicom.dcm", x.syntax)
                    assert (tmp_path / "fast.dcm").read_bytes() == \
                        (tmp_path / "pydicom.dcm").read_bytes(), (x.kind, x.syntax, i)
    assert len({syntax for syntax, _ in seen}) >= (2 if collection != "COVID-19-AR" else 1)
