"""Render one study into its NBIA folders (runs in the writer's worker processes).

Each study draws from its own RNG streams (seed, patient, study, series), so the bytes on disk
never depend on the worker count or on the order in which studies finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from pydicom import config

from .ctseries import PLANNERS, Scan, render_ct_series
from .dicom import StudyJob, write_instance
from .layout import instance_name, series_dir, study_dir
from .others import RENDERERS
from .xr import radiograph_dataset


@contextmanager
def unvalidated() -> Iterator[None]:
    """The generator's own values need no checking; pydicom's value validation is half the
    cost of building a radiograph. Restored afterwards (workers=1 renders in the caller)."""
    settings = config.settings
    saved = settings.writing_validation_mode, settings.reading_validation_mode
    settings.writing_validation_mode = settings.reading_validation_mode = config.IGNORE
    try:
        yield
    finally:
        settings.writing_validation_mode, settings.reading_validation_mode = saved


def render_study(job: StudyJob) -> tuple[int, int]:
    """Render and write one study; returns (instances, bytes)."""
    with unvalidated():
        return _render(job)


def _render(job: StudyJob) -> tuple[int, int]:
    p, s = job.patient, job.study
    folder = study_dir(job.root, p, s)
    scan: Scan | None = None
    count = size = 0
    for k, series in enumerate(s.series):
        target = series_dir(folder, series)
        target.mkdir(parents=True, exist_ok=True)
        n = len(series.instance_uids)
        if series.kind == "xr":
            rng = np.random.default_rng([job.seed, 2, p.index, s.ordinal, 100 + k])
            for i in range(n):
                ds = radiograph_dataset(job, series, i, rng)
                size += write_instance(ds, target / instance_name(i, n), series.syntax)
        else:
            scan = scan or Scan(job)
            render = render_ct_series if series.kind in PLANNERS else RENDERERS[series.kind]
            size += render(scan, series, target)
        count += n
    return count, size
