"""The ``tcia-gateway`` command line (README.md, "Command line")."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .config import Settings, SettingsError, parse_hostport
from .synth.skeleton import COLLECTIONS

if TYPE_CHECKING:
    from .archive.local import LocalArchive
    from .ingest.importer import ImportReport

# A module, not a file next to the sources: it is installed with the package (wheel, image).
GUNICORN_CONF = "python:gateway.serving.gunicorn_conf"


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _with(settings: Settings, **changes: object) -> Settings:
    """``settings`` with command-line overrides, or a usage error naming the bad one."""
    try:
        for key in ("http_bind", "dimse_bind"):
            if changes.get(key):
                parse_hostport(str(changes[key]), "--" + key.split("_")[0])
        return settings.replace(**{k: v for k, v in changes.items() if v})
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), envvar="GATEWAY_CONFIG",
              help="TOML settings file (keys as in the README's settings table).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """DICOMweb, DIMSE and FHIR R4 gateway for TCIA-style imaging archives."""
    try:
        ctx.obj = {"settings": Settings.load(config)}
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--collection", type=click.Choice(COLLECTIONS), default=COLLECTIONS[0],
              show_default=True, help="The real collection whose twin to write.")
@click.option("--full", is_flag=True,
              help="Exact instance counts (default: CT series keep 1 image in 10).")
@click.option("--patients", type=click.IntRange(1), default=None,
              help="Sample N patients of the collection (default: all).")
@click.option("--seed", default=0, show_default=True, help="Random seed; same seed, same bytes.")
@click.option("--xr-size", default=1024, show_default=True, type=click.IntRange(64),
              help="Radiograph height in pixels (width is 0.85 x this).")
@click.option("--ct-size", default=512, show_default=True, type=click.IntRange(32),
              help="CT matrix (rows = columns); MR, PET and NM scale from it.")
@click.option("--classic", is_flag=True,
              help="The classic cohort instead: drawn from COVID-19-AR's marginals, one CT "
                   "series per study, RLE / JPEG 2000 / MONOCHROME1 variants.")
@click.option("--ct-slices", type=click.IntRange(1), default=None,
              help="Classic cohort: axial slices per CT series [64] (implies --classic).")
@click.option("--ct-fraction", type=click.FloatRange(0, 1), default=None,
              help="Classic cohort: fraction of patients with a CT (implies --classic).")
def synth(out: Path, collection: str, full: bool, patients: int | None, seed: int,
          xr_size: int, ct_size: int, classic: bool, ct_slices: int | None,
          ct_fraction: float | None) -> None:
    """Write a synthetic twin of a TCIA collection to OUT: NBIA layout, metadata.csv, LICENSE
    and, for COVID-19-AR, the clinical sheets."""
    from . import synth as S
    classic = classic or ct_slices is not None or ct_fraction is not None
    if classic and (full or collection != COLLECTIONS[0]):
        raise click.UsageError("--classic (or --ct-slices/--ct-fraction) writes COVID-19-AR's "
                               "classic cohort; it takes neither --full nor --collection")
    t0 = time.monotonic()
    progress = sys.stderr.isatty()
    try:
        summary = S.write_cohort(out, patients=patients or 105, seed=seed,
                                 ct_slices=ct_slices or 64, xr_size=xr_size,
                                 ct_fraction=ct_fraction, ct_size=ct_size, progress=progress) \
            if classic else S.write_twin(out, collection, full=full, patients=patients, seed=seed,
                                         xr_size=xr_size, ct_size=ct_size, progress=progress)
    except S.SkeletonError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {summary.collection}: {summary.patients} patients, {summary.studies} "
               f"studies, {summary.series} series, {summary.instances} instances "
               f"({summary.bytes / 1e6:.0f} MB) to {out} in {time.monotonic() - t0:.1f} s")


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--clinical", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="Clinical sheet (xlsx, or csv); may be given twice.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Parallel parse processes (default: IMPORT_WORKERS).")
@click.option("--collection", default=None, metavar="NAME",
              help="Collection of every file (default: each file's CTP ProjectName).")
@click.pass_context
def import_(ctx: click.Context, paths: tuple[Path, ...], clinical: tuple[Path, ...],
            workers: int | None, collection: str | None) -> None:
    """Import DICOM files, folders (recursive) and .zip archives, and the clinical sheet
    (given with --clinical, or found among them: COVID_19_AR_ClinicalCorrelates*.xlsx,
    clinical.csv, clinical_imaging.csv)."""
    report = do_import(_settings(ctx), list(paths), list(clinical), workers=workers,
                       collection=collection)
    if report.rejected and not (report.new or report.duplicate or report.replaced):
        ctx.exit(1)


def do_import(settings: Settings, paths: list[Path], clinical: list[Path], *,
              workers: int | None = None, collection: str | None = None) -> ImportReport:
    """Images first, then every clinical sheet (given, or found among ``paths``)."""
    from .archive import ArchiveError
    from .archive.local import open_local
    from .ingest.importer import run_import
    archive = open_local(settings)
    try:
        t0 = time.monotonic()
        try:
            report = run_import(archive, paths, workers=workers or settings.import_workers,
                                on_reject=lambda name, why: click.echo(f"rejected {name}: {why}",
                                                                       err=True),
                                collection=collection)
        except ArchiveError as exc:  # the index refused a write: what was indexed before stays
            raise click.ClickException(exc.message) from exc
        dt = time.monotonic() - t0
        click.echo(f"imported: {report.summary()} in {dt:.1f} s "
                   f"({(report.new + report.replaced) / dt if dt else 0:.0f} instances/s)")
        sheets = list({p.resolve(): p for p in [*clinical, *report.sheets]}.values())
        if sheets:
            _import_sheets(settings, archive, sheets)
        _sync_collections(settings, archive)
    finally:
        archive.close()
    return report


def _sync_collections(settings: Settings, archive: LocalArchive) -> None:
    """ResearchStudy / ResearchSubject (and DICOM-made Patients) of the collections held."""
    from .clinical.collections import load_facts
    from .clinical.repository import Repository
    from .ingest.collections import sync_collections
    counts = sync_collections(archive, Repository(archive.index.engine),
                              load_facts(settings.data_dir / "cache"))
    if counts["created"] or counts["updated"] or counts["deleted"]:
        click.echo(f"collections: FHIR ResearchStudy/ResearchSubject {counts}")


def _import_sheets(settings: Settings, archive: LocalArchive, sheets: list[Path]) -> None:
    from .ingest.clinical import import_clinical
    from .mapping.engine import Engine
    from .mapping.sheet import SheetError
    from .mapping.spec import SpecError, load
    try:
        engine = Engine(load(settings.mappings_dir or None))
    except SpecError as exc:
        raise click.ClickException(f"MAPPINGS_DIR: {exc}") from exc
    for sheet in sheets:
        try:
            res = import_clinical(archive, sheet, engine)
        except SheetError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"clinical: {res.patients} patient rows, {res.imaging} imaging rows "
                   f"from {res.source}")
        click.echo(f"FHIR: {res.fhir}")


@main.command()
@click.option("--repair", is_flag=True, help="Index good unindexed files, remove orphans and "
              "leftovers, rebuild FHIR links; say what could not be repaired.")
@click.option("--quick", is_flag=True, help="Compare file sizes only, not SHA-256 digests.")
@click.pass_context
def check(ctx: click.Context, repair: bool, quick: bool) -> None:
    """Verify the archive: files against the index, tmp/, FHIR links. Exit 1 if something
    is wrong (with --repair: if something could not be repaired)."""
    from .archive import ArchiveError
    from .archive.local import open_local
    from .ingest.check import check as run_check
    settings = _settings(ctx)
    archive = open_local(settings, sweep=False)
    try:
        report = run_check(archive, temp_max_age=settings.temp_max_age, repair=repair,
                           digests=not quick)
    except ArchiveError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        archive.close()
    for problem in report.problems:
        click.echo(problem.line())
    click.echo(report.summary())
    if report.unrepaired:
        ctx.exit(1)


@main.command()
@click.option("--http", "http_bind", default=None, help="HOST:PORT (default: HTTP_BIND).")
@click.pass_context
def serve(ctx: click.Context, http_bind: str | None) -> None:
    """Serve HTTP (DICOMweb, WADO-URI, FHIR, viewer) under gunicorn."""
    settings = _with(_settings(ctx), http_bind=http_bind)
    os.execvpe(sys.executable, _gunicorn_argv(), _child_env(settings))


@main.command()
@click.option("--patients", default=None, type=click.IntRange(1),
              help="On an empty data dir, sample N patients of each twin "
                   "(default: all of them).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Data directory (default: DATA_DIR).")
@click.option("--http", "http_bind", default=None, help="HOST:PORT for HTTP (default: HTTP_BIND).")
@click.option("--dimse", "dimse_bind", default=None,
              help="HOST:PORT for the DIMSE SCP (default: DIMSE_BIND).")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic cohort.")
@click.option("--collections", "names", default=COLLECTIONS[0], show_default=True,
              metavar="NAME,NAME", help="On an empty data dir, the twins to synthesise and "
              f"import side by side (of {', '.join(COLLECTIONS)}).")
@click.option("--xr-size", default=1024, show_default=True, type=click.IntRange(64),
              help="Radiograph height in pixels of the synthesised twins.")
@click.option("--ct-size", default=512, show_default=True, type=click.IntRange(32),
              help="CT matrix of the synthesised twins.")
@click.pass_context
def demo(ctx: click.Context, patients: int | None, data_dir: Path | None, http_bind: str | None,
         dimse_bind: str | None, seed: int, names: str, xr_size: int, ct_size: int) -> None:
    """Synthesise and import the demo collections on an empty data dir, then serve them."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in COLLECTIONS]
    if unknown or not wanted:
        raise click.UsageError(f"--collections: {', '.join(unknown) or 'none given'}; choose "
                               f"from {', '.join(COLLECTIONS)}")
    settings = _with(_settings(ctx), data_dir=data_dir, http_bind=http_bind,
                     dimse_bind=dimse_bind)
    _ensure_demo_data(settings, patients, seed, wanted, xr_size=xr_size, ct_size=ct_size)
    _serve_all(settings)


def _ensure_demo_data(settings: Settings, patients: int | None, seed: int,
                      collections: list[str], *, xr_size: int, ct_size: int) -> None:
    from .archive.local import open_local
    archive = open_local(settings)
    try:
        populated = archive.index.counts()["instances"]
    finally:
        archive.close()
    if populated:
        click.echo(f"data dir {settings.data_dir} is populated: serving it")
        return
    from .synth import write_twin
    roots, sheets = [], []
    for name in collections:  # each in its own folder: every download has its metadata.csv
        cohort = settings.data_dir / "cohort" / name
        click.echo(f"empty data dir: synthesising the {name} twin into {cohort}")
        t0 = time.monotonic()
        summary = write_twin(cohort, name, patients=patients, seed=seed, xr_size=xr_size,
                             ct_size=ct_size, progress=sys.stderr.isatty())
        click.echo(f"synthesised {summary.patients} patients, {summary.instances} instances in "
                   f"{time.monotonic() - t0:.1f} s")
        roots.append(summary.root)
        sheets += [summary.xlsx] if summary.xlsx else []
    do_import(settings, roots, sheets)  # their LICENSE and metadata.csv: skipped


def _serve_all(settings: Settings) -> None:
    """Run gunicorn (and the DIMSE SCP when available) until interrupted."""
    env = _child_env(settings)
    procs = [subprocess.Popen(_gunicorn_argv(), env=env)]
    dimse = _dimse_argv()
    if dimse:
        procs.append(subprocess.Popen([sys.executable, *dimse], env=env))
    base = settings.public_base
    click.echo(f"serving: DICOMweb {base}/dicomweb  WADO-URI {base}/wado  FHIR {base}/fhir  "
               f"health {base}/healthz")
    _viewer_hint(settings)
    if dimse:
        click.echo(f"DIMSE SCP: {settings.ae_title}@{settings.dimse_bind}")
    _wait(procs)


def _viewer_hint(settings: Settings) -> None:
    if (settings.data_dir / "viewer" / "index.html").exists():
        click.echo(f"viewer: {settings.public_base}/viewer/")
    elif "viewer" in main.commands:
        click.echo("viewer: not installed (run `tcia-gateway viewer install`)")


def _dimse_argv() -> list[str] | None:
    return ["-m", "gateway", "dimse"] if "dimse" in main.commands else None


def _wait(procs: list[subprocess.Popen]) -> None:
    def stop(*_signal: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop()
    for p in procs:
        p.wait(timeout=30)
    code = max((p.returncode or 0) for p in procs)
    sys.exit(code if code > 0 else 0)


def _gunicorn_argv() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, "gateway.wsgi:app"]


def _child_env(settings: Settings) -> dict[str, str]:
    """The environment of gunicorn (master and workers) and the SCP: every resolved setting
    as GATEWAY_*, so they load exactly these (no TOML file of their own to re-read)."""
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
    env.update(settings.to_env())
    return env


# Commands that belong to a protocol package live there (``COMMANDS`` list of click
# commands), so each package owns its CLI; a package not installed adds none.
COMMAND_MODULES = ("gateway.scp.commands", "gateway.viewer.commands")


def _add_package_commands() -> None:
    import importlib
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        for command in module.COMMANDS:
            main.add_command(command)


_add_package_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
