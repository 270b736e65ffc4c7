"""The README's fresh-machine commands are the ones CI runs."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_COMMAND = ".ci/install && python3 -m pytest"
DEMO_COMMAND = ("python3 -m pip install -r requirements.txt && python3 -m pip install --no-deps -e . "
                "&& tcia-gateway demo")


def first_screen() -> str:
    return "\n".join((ROOT / "README.md").read_text().splitlines()[:30])


def test_first_screen_has_both_commands() -> None:
    screen = first_screen()
    assert DEMO_COMMAND in screen
    assert TEST_COMMAND in screen


def test_ci_runs_the_readme_test_command() -> None:
    assert f"'{TEST_COMMAND}'" in (ROOT / ".ci" / "run").read_text()
