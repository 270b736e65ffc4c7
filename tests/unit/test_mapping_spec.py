"""A broken mapping file stops start-up with the file and line of the mistake."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.mapping.spec import BUILTIN, SpecError, load


def broken(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """A copy of the built-in mapping with one edit; returns the directory and the edited line (1-based)."""
    target = tmp_path / "mappings"
    shutil.copytree(str(BUILTIN), target)
    path = target / name
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return target, line


@pytest.mark.parametrize("name, old, new, message", [
    ("observation.yaml", "column: latest_bmi", "column: latest_bmii", "unknown column 'latest_bmii'"),
    ("observation.yaml", "valueQuantity: {value: $bmi", "valueQuantiti: {value: $bmi",
     "unknown element Observation.valueQuantiti"),
    ("condition.yaml", "{system: sct, code: \"56717001\"", "{system: snomed-ct, code: \"56717001\"",
     "unknown code system 'snomed-ct'"),
    ("observation.yaml", "transform: height_inches", "transform: height_cm", "unknown transform 'height_cm'"),
    ("patient.yaml", "gender: $gender", "gender: $sex", "unknown value '$sex'"),
    ("patient.yaml", "resource: Patient", "resource: Patiant", "unknown resource type 'Patiant'"),
    ("report.yaml", "\"{patient_id}-img{row}-report\"", "\"{patient}-img{row}-report\"",
     "unknown column 'patient'"),
])
def test_broken_mapping_names_file_and_line(tmp_path, name, old, new, message):
    directory, line = broken(tmp_path, name, old, new)
    with pytest.raises(SpecError) as failure:
        load(directory)
    assert str(failure.value).startswith(f"{directory / name}:{line}: ")
    assert message in str(failure.value)


def test_unknown_extension_url_is_refused(tmp_path):
    directory, line = broken(tmp_path, "patient.yaml", "- {url: us-core-race,",
                             "- {url: \"http://example.org/race\",")
    with pytest.raises(SpecError, match=rf"patient.yaml:{line}: unknown extension"):
        load(directory)


def test_yaml_syntax_error_names_the_line(tmp_path):
    directory, line = broken(tmp_path, "encounter.yaml", "status: finished", "status: [finished")
    with pytest.raises(SpecError, match=rf"encounter.yaml:\d+: "):
        load(directory)


def test_absent_policy_needs_data_absent_reason(tmp_path):
    directory, _ = broken(tmp_path, "patient.yaml", "transform: digits\n        length: 3\n        missing: omit",
                          "transform: digits\n        length: 3\n        missing: absent")
    with pytest.raises(SpecError, match="dataAbsentReason"):
        load(directory)


def test_shipped_mapping_loads():
    spec = load()
    assert {r.resource for r in spec.rules} == {"Patient", "Condition", "Observation", "Encounter",
                                                "DiagnosticReport", "MolecularSequence"}
