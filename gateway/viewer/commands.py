"""``tcia-gateway viewer ...``: install the OHIF build and report on it."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import Settings


def _settings() -> Settings:
    ctx = click.get_current_context()
    return ctx.find_root().obj["settings"]


@click.group()
def viewer() -> None:
    """The OHIF viewer served at /viewer/ (installed into DATA_DIR/viewer)."""


@viewer.command()
@click.option("--version", "version", default=None, metavar="X.Y.Z",
              help="@ohif/app version (default: the pinned, tested one).")
@click.option("--from-tarball", "tarball", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Install from an `npm pack` tarball already on disk (offline installs).")
@click.option("--force", is_flag=True, help="Reinstall even when the same build is installed.")
def install(version: str | None, tarball: Path | None, force: bool) -> None:
    """Fetch @ohif/app (npm pack), rewrite it for /viewer/ and install it."""
    from . import install as inst
    settings = _settings()
    try:
        result = inst.install(settings, version=version or inst.DEFAULT_VERSION,
                              tarball=tarball, force=force, log=click.echo)
    except inst.InstallError as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "kept" if result.reused else "installed"
    click.echo(f"viewer: {verb} {inst.PACKAGE}@{result.version} in {result.root} "
               f"({result.seconds:.1f} s); open {settings.public_base}/viewer/")


@viewer.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Say whether the viewer is installed, which version, and whether it verifies."""
    from . import install as inst
    settings = _settings()
    info = inst.status(settings)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif not info["installed"]:
        click.echo(f"viewer: not installed in {info['root']} "
                   f"(run `tcia-gateway viewer install`)")
    else:
        click.echo(f"viewer: {inst.PACKAGE}@{info['version'] or '?'} in {info['root']} "
                   f"(installed {info['installed_at'] or '?'}); "
                   f"URL {settings.public_base}/viewer/")
        for problem in info["problems"]:
            click.echo(f"  problem: {problem}")
    if info["installed"] and info["problems"]:
        raise SystemExit(1)
    if not info["installed"]:
        raise SystemExit(3)


COMMANDS = [viewer]
