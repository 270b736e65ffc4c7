"""Synthetic instances pass dicom3tools' dciodvfy without an Error line: every file of a small
classic cohort, and one file of every kind of series the twins of the real collections hold
(each SOP class, transfer syntax, photometric interpretation and pixel representation)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from gateway.synth import write_cohort
from gateway.synth.cohort import EXPLICIT_VR_LE, JPEG2000_LOSSLESS, RLE_LOSSLESS
from gateway.synth.dicom import job_for
from gateway.synth.layout import instance_name, series_dir, study_dir
from gateway.synth.model import (
    CR_IMAGE,
    CT_IMAGE,
    DOSE_SR,
    DX_IMAGE,
    IMPLICIT_VR_LE,
    JPEG_LOSSLESS,
    MR_IMAGE,
    NM_IMAGE,
    PET_IMAGE,
    SC_IMAGE,
)
from gateway.synth.render import render_study
from gateway.synth.skeleton import COLLECTIONS, read_skeleton
from gateway.synth.twin import build_twin

DCIODVFY = "/usr/bin/dciodvfy"
IODS = ("CRImage", "DXImageForPresentation", "CTImage", "SCImage", "MRImage", "NMImage",
        "PETImage", "XRayRadiationDoseSR")


def dciodvfy() -> str:
    if Path(DCIODVFY).exists():
        return DCIODVFY
    found = shutil.which("dciodvfy")
    if not found:
        pytest.fail("dciodvfy not found: install it with `apt-get install dicom3tools`")
    return found


def errors_of(paths: list[Path]) -> list[str]:
    failures = []
    for path in paths:
        run = subprocess.run([dciodvfy(), str(path)], capture_output=True, text=True,
                             errors="replace", timeout=60, check=False)  # status is no verdict
        report = run.stdout + run.stderr
        errors = [line for line in report.splitlines() if "Error" in line]
        if errors:
            failures.append(f"{path.name} ({path.parent.name}):\n  " + "\n  ".join(errors))
        assert any(iod in report for iod in IODS), \
            f"dciodvfy did not recognise the IOD of {path}:\n{report}"
    return failures


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("iod")
    summary = write_cohort(out, patients=4, seed=0, ct_slices=4, xr_size=256, workers=1)
    return sorted(summary.root.rglob("*.dcm"))


@pytest.fixture(scope="module")
def twin_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, Path]:
    """(SOP class, kind, syntax, photometric, pixel representation) -> one file of it."""
    out = tmp_path_factory.mktemp("iod-twins")
    picked: dict[tuple, tuple] = {}
    for name in COLLECTIONS:
        cohort = build_twin(read_skeleton(name), xr_size=64, ct_size=64)
        for p in cohort.patients:
            for s in p.studies:
                for x in s.series:
                    picked.setdefault((x.sop_class, x.kind, x.syntax, x.photometric,
                                       x.pixel_rep), (cohort, p, s, x))
    samples, rendered = {}, set()
    for key, (cohort, p, s, x) in picked.items():
        root = out / cohort.marks.collection
        if s.uid not in rendered:
            render_study(job_for(root, cohort.seed, 64, 64, p, s, cohort.marks))
            rendered.add(s.uid)
        folder = series_dir(study_dir(root, p, s), x)
        samples[key] = folder / instance_name(0, len(x.instance_uids))
    return samples


def test_cohort_covers_every_iod_and_syntax(cohort_files: list[Path]) -> None:
    seen = set()
    for path in cohort_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        seen.add((ds.Modality, ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation))
    modalities = {m for m, _, _ in seen}
    syntaxes = {t for _, t, _ in seen}
    assert modalities == {"CR", "DX", "CT"}
    assert syntaxes == {EXPLICIT_VR_LE, RLE_LOSSLESS, JPEG2000_LOSSLESS}
    assert ("CR", EXPLICIT_VR_LE, "MONOCHROME1") in seen


def test_dciodvfy_reports_no_errors(cohort_files: list[Path]) -> None:
    failures = errors_of(cohort_files)
    assert not failures, "\n".join(failures)


def test_twins_cover_every_sop_class_and_syntax(twin_samples: dict[tuple, Path]) -> None:
    assert {k[0] for k in twin_samples} == {CR_IMAGE, DX_IMAGE, CT_IMAGE, SC_IMAGE, MR_IMAGE,
                                            NM_IMAGE, PET_IMAGE, DOSE_SR}
    assert {k[2] for k in twin_samples} == {IMPLICIT_VR_LE, EXPLICIT_VR_LE, JPEG_LOSSLESS}
    kinds = {k[1] for k in twin_samples if k[0] in (CT_IMAGE, SC_IMAGE)}
    assert {"axial", "coronal", "sagittal", "mip-coronal", "mip-sagittal", "projection",
            "monitor", "fused", "pet-mip"} <= kinds
    for key, path in twin_samples.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) == (key[0], key[2])


def test_dciodvfy_reports_no_errors_on_the_twins(twin_samples: dict[tuple, Path]) -> None:
    failures = errors_of(sorted(twin_samples.values()))
    assert not failures, "\n".join(failures)
