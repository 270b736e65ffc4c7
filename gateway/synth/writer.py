"""``write_cohort``: the synthetic COVID-19-AR cohort on disk (NBIA layout + clinical sheets).

The cohort model is built in the calling process; each study is rendered and written by a
worker process from its own RNG stream, so the bytes on disk never depend on the worker count or
on scheduling order, and only one study's pixels are in memory per worker at a time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .cohort import build_cohort
from .dicom import COLLECTION, StudyJob, job_for, render_study
from .sheet import write_sheets

# fork: no re-import of the caller's __main__ (scripts without a main guard work) and no
# interpreter start-up per worker; spawn where fork does not exist.
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass(frozen=True)
class CohortSummary:
    """What was written: counts, DICOM bytes (the .dcm files only) and the output paths."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int
    ct_studies: int
    xr_studies: int
    root: Path
    clinical_csv: Path
    imaging_csv: Path
    xlsx: Path


def _progress_bar(total: int, enabled: bool):  # tqdm is optional at run time
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="study", desc="synth")


def _render_all(jobs: list[StudyJob], workers: int, progress: bool) -> tuple[int, int]:
    """Render every study; returns (instances, bytes). Heaviest studies start first."""
    jobs = sorted(jobs, key=lambda j: -j.study.instances)
    bar = _progress_bar(len(jobs), progress)
    instances = size = 0
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                n, b = render_study(job)
                instances, size = instances + n, size + b
                if bar:
                    bar.update()
            return instances, size
        context = multiprocessing.get_context(_START_METHOD)
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            for future in as_completed([pool.submit(render_study, job) for job in jobs]):
                n, b = future.result()
                instances, size = instances + n, size + b
                if bar:
                    bar.update()
        return instances, size
    finally:
        if bar:
            bar.close()


def write_cohort(out: Path, *, patients: int = 105, seed: int = 0, ct_slices: int = 64,
                 xr_size: int = 1024, ct_fraction: float | None = None,
                 workers: int | None = None, progress: bool = False) -> CohortSummary:
    """Write the cohort under ``out``: ``COVID-19-AR/…`` DICOM files and the clinical sheets.

    ``ct_fraction`` None follows the collection (23 CT patients of 105); otherwise exactly
    round(fraction × patients) evenly spread patients get one CT. Same arguments → same bytes.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cohort = build_cohort(patients, seed=seed, ct_slices=ct_slices, xr_size=xr_size,
                          ct_fraction=ct_fraction)
    studies = cohort.studies
    jobs = [job_for(out, seed, ct_slices, xr_size, p, s)
            for p in cohort.patients for s in p.studies]
    instances, size = _render_all(jobs, workers or os.cpu_count() or 1, progress)
    clinical, imaging, xlsx = write_sheets(cohort, out)
    ct = sum(1 for s in studies if s.modality == "CT")
    return CohortSummary(
        patients=len(cohort.patients), studies=len(studies),
        series=sum(len(s.series) for s in studies), instances=instances, bytes=size,
        ct_studies=ct, xr_studies=len(studies) - ct, root=out / COLLECTION,
        clinical_csv=clinical, imaging_csv=imaging, xlsx=xlsx)
