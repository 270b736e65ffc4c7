"""Synthetic COVID-19-AR cohort: seeded patients, chest radiographs and CT, clinical sheets."""

from .writer import CohortSummary, write_cohort

__all__ = ["CohortSummary", "write_cohort"]
