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


def _commands(group, prefix: str = ""):
    import click
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_command_table_names_every_command_and_option() -> None:
    """The README's command table is what ``--help`` offers: every command, every option."""
    from gateway.cli import main
    rows = [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| `")]
    missing = []
    for name, command in _commands(main):
        row = next((r for r in rows if r.startswith(f"| `{name}")), None)
        if row is None:
            missing.append(f"{name}: no row")
            continue
        for param in command.params:
            longs = [o for o in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
                     if o.startswith("--")]
            if longs and longs[0] != "--help" and not any(f"{o}]" in row or f"{o} " in row
                                                           for o in longs):
                missing.append(f"{name}: {longs[0]}")
    assert not missing, missing
