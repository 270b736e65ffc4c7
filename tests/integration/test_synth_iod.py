"""Every synthetic instance passes dicom3tools' dciodvfy without an Error line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from gateway.synth import write_cohort
from gateway.synth.cohort import EXPLICIT_VR_LE, JPEG2000_LOSSLESS, RLE_LOSSLESS

DCIODVFY = "/usr/bin/dciodvfy"


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("iod")
    summary = write_cohort(out, patients=4, seed=0, ct_slices=4, xr_size=256, workers=1)
    return sorted(summary.root.rglob("*.dcm"))


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
    if not Path(DCIODVFY).exists() and not shutil.which("dciodvfy"):
        pytest.fail("dciodvfy not found: install it with `apt-get install dicom3tools`")
    tool = DCIODVFY if Path(DCIODVFY).exists() else shutil.which("dciodvfy")
    failures = []
    for path in cohort_files:
        run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60,
                             check=False)  # dciodvfy's exit status is not its verdict
        report = run.stdout + run.stderr
        errors = [line for line in report.splitlines() if "Error" in line]
        if errors:
            failures.append(f"{path.name} ({path.parent.name}):\n  " + "\n  ".join(errors))
        assert any(iod in report for iod in ("CRImage", "DXImageForPresentation", "CTImage")), \
            f"dciodvfy did not recognise the IOD of {path}:\n{report}"
    assert not failures, "\n".join(failures)
