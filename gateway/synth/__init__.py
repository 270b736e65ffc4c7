"""Synthetic cohorts: the twin of a real TCIA collection, and the classic COVID-19-AR cohort.

The writers load numpy, pydicom and the phantoms; they are imported on first use, so the
command line can list the collections (``skeleton.COLLECTIONS``) without paying for them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLLECTIONS", "CohortSummary", "SkeletonError", "write_cohort", "write_twin"]


def __getattr__(name: str) -> Any:  # PEP 562: lazy public names
    if name in ("COLLECTIONS", "SkeletonError"):
        from . import skeleton
        return getattr(skeleton, name)
    if name in ("CohortSummary", "write_cohort", "write_twin"):
        from . import writer
        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
