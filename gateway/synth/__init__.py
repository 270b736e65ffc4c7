"""Synthetic cohorts: the twin of a real TCIA collection, and the classic COVID-19-AR cohort."""

from .skeleton import COLLECTIONS, SkeletonError
from .writer import CohortSummary, write_cohort, write_twin

__all__ = ["COLLECTIONS", "CohortSummary", "SkeletonError", "write_cohort", "write_twin"]
