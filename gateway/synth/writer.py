"""``write_twin`` and ``write_cohort``: a cohort on disk, in the NBIA Data Retriever's layout.

The model is built in the calling process; each study is rendered and written by a worker
process from its own RNG streams, so the bytes on disk never depend on the worker count or on
scheduling order, and only one study's pixels are in memory per worker at a time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tables as T
from .cohort import COLLECTION, build_cohort
from .dicom import StudyJob, job_for
from .layout import write_license, write_metadata_csv
from .model import Cohort
from .render import render_study
from .sheet import write_sheets
from .skeleton import read_skeleton
from .twin import build_twin

# fork: no re-import of the caller's __main__ (scripts without a main guard work) and no
# interpreter start-up per worker; spawn where fork does not exist.
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass(frozen=True)
class CohortSummary:
    """What was written: counts, DICOM bytes (the .dcm files only) and the output paths.

    ``root`` is the collection folder (what to import); the clinical sheet paths are None for
    collections without one (every collection but COVID-19-AR), ``license`` for the classic
    cohort, which keeps its collection folder DICOM-only.
    """

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int
    ct_studies: int
    xr_studies: int
    root: Path
    clinical_csv: Path | None
    imaging_csv: Path | None
    xlsx: Path | None
    collection: str = COLLECTION
    metadata_csv: Path | None = None
    license: Path | None = None


def _progress_bar(total: int, enabled: bool) -> Any:  # tqdm is optional at run time
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


def _write(cohort: Cohort, out: Path, workers: int | None, progress: bool) -> tuple[Path, int, int]:
    out.mkdir(parents=True, exist_ok=True)
    root = out / cohort.marks.collection
    jobs = [job_for(root, cohort.seed, cohort.xr_size, cohort.ct_size, p, s, cohort.marks)
            for p in cohort.patients for s in p.studies]
    instances, size = _render_all(jobs, workers or os.cpu_count() or 1, progress)
    return root, instances, size


def _summary(cohort: Cohort, root: Path, instances: int, size: int,
             sheets: tuple[Path | None, Path | None, Path | None], **paths: Any
             ) -> CohortSummary:
    studies = cohort.studies
    ct = sum(1 for s in studies if "CT" in s.modalities)
    xr = sum(1 for s in studies if {"CR", "DX"} & set(s.modalities))
    clinical, imaging, xlsx = sheets
    return CohortSummary(
        patients=len(cohort.patients), studies=len(studies), series=len(cohort.series),
        instances=instances, bytes=size, ct_studies=ct, xr_studies=xr, root=root,
        clinical_csv=clinical, imaging_csv=imaging, xlsx=xlsx,
        collection=cohort.marks.collection, **paths)


def write_twin(out: Path, collection: str = COLLECTION, *, full: bool = False,
               patients: int | None = None, seed: int = 0, xr_size: int = 1024,
               ct_size: int = 512, workers: int | None = None, progress: bool = False
               ) -> CohortSummary:
    """Write the twin of ``collection`` under ``out``: every patient, study and series of the
    real one (``patients`` samples that many), ``metadata.csv``, ``<Collection>/LICENSE`` and,
    for COVID-19-AR, the clinical sheets. Without ``full`` CT series keep 1 image in
    ``twin.THIN``. Same arguments → same bytes."""
    out = Path(out)
    skeleton = read_skeleton(collection)
    cohort = build_twin(skeleton, seed=seed, full=full, patients=patients, xr_size=xr_size,
                        ct_size=ct_size)
    root, instances, size = _write(cohort, out, workers, progress)
    metadata = write_metadata_csv(out, root, cohort, skeleton.licence.doi)
    licence = write_license(root, skeleton.licence)
    sheets = write_sheets(cohort, out) if skeleton.name == COLLECTION else (None, None, None)
    return _summary(cohort, root, instances, size, sheets, metadata_csv=metadata,
                    license=licence)


def write_cohort(out: Path, *, patients: int = 105, seed: int = 0, ct_slices: int = 64,
                 xr_size: int = 1024, ct_fraction: float | None = None, ct_size: int = 512,
                 workers: int | None = None, progress: bool = False) -> CohortSummary:
    """Write the classic cohort (COVID-19-AR's marginals, see ``cohort.py``) under ``out``.

    ``ct_fraction`` None follows the collection (23 CT patients of 105); otherwise exactly
    round(fraction × patients) evenly spread patients get one CT. Same arguments → same bytes.
    """
    out = Path(out)
    cohort = build_cohort(patients, seed=seed, ct_slices=ct_slices, xr_size=xr_size,
                          ct_fraction=ct_fraction, ct_size=ct_size)
    root, instances, size = _write(cohort, out, workers, progress)
    metadata = write_metadata_csv(out, root, cohort, T.COVID_19_AR_DOI)
    return _summary(cohort, root, instances, size, write_sheets(cohort, out),
                    metadata_csv=metadata)
