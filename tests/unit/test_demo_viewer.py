"""``demo`` installs the viewer in the background when it is missing, and says plainly when
it cannot (no npm, no registry): the gateway serves on without it."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli
from gateway.config import Settings


def test_without_npm_demo_says_plainly_that_the_viewer_is_not_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm on this PATH
    settings = Settings().replace(data_dir=tmp_path / "data")
    assert not cli._viewer_installed(settings)
    cli._install_viewer(settings)
    out = capsys.readouterr().out
    assert "viewer: not installed: npm not found" in out
    assert "run `tcia-gateway viewer install` once npm can reach its registry" in out
    assert not cli._viewer_installed(settings)


def test_demo_offers_no_viewer() -> None:
    options = {o for p in cli.demo.params for o in getattr(p, "opts", [])}
    assert {"--viewer", "--no-viewer"} <= options | set(
        s for p in cli.demo.params for s in getattr(p, "secondary_opts", []))
