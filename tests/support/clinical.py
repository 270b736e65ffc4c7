"""The synthetic cohort's clinical sheet as rows, edited by tests and written back."""
from __future__ import annotations

import csv
from pathlib import Path

# Yes/no comorbidity columns of the data dictionary: each "Y" is one Condition.
COMORBIDITY_FLAGS = ("cancer", "diabetes_type_ii", "chronic_kidney_disease", "tuberculosis",
                     "malnutrition")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(rows: list[dict[str, str]], path: Path) -> Path:
    """``rows`` as a CSV clinical sheet at ``path`` (the columns of the first row)."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
