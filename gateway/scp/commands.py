"""CLI commands of the DIMSE package (`tcia-gateway dimse`, `tcia-gateway echo`)."""
from __future__ import annotations

import logging
import signal
import threading

import click

from ..config import Settings, SettingsError


def _quiet_pynetdicom(settings: Settings) -> None:
    """pynetdicom logs every PDU at INFO; keep it for DEBUG runs only."""
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "DEBUG":
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@click.command()
@click.option("--bind", default=None, help="HOST:PORT (default: DIMSE_BIND).")
@click.pass_context
def dimse(ctx: click.Context, bind: str | None) -> None:
    """Serve the archive as a DICOM Q/R SCP (C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE)."""
    from ..backends import open_archive
    from . import server as scp
    from .auditing import open_trail
    from .security import dimse_problems
    settings: Settings = ctx.obj["settings"]
    _quiet_pynetdicom(settings)
    try:
        problems = dimse_problems(settings, bind)
    except ValueError as exc:  # AUTH_MODE=requried and the like
        raise click.UsageError(str(exc)) from exc
    if problems:
        raise click.UsageError("refusing to start: " + "; ".join(problems))
    archive = open_archive(settings)
    trail = open_trail(settings)
    try:
        servers = scp.listen(settings, archive, bind, trail=trail)
    except (SettingsError, OSError) as exc:
        archive.close()
        raise click.ClickException(
            f"cannot serve DIMSE on {bind or settings.dimse_bind}: {exc}") from exc
    addresses = ", ".join(f"{s.server_address[0]}:{s.server_address[1]}" for s in servers)
    click.echo(f"DIMSE SCP {settings.ae_title}@{addresses} (C-MOVE destinations: "
               f"{', '.join(scp.known_aes(settings)) or 'none'})", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_a: stop.set())
    stop.wait()
    for server in servers:
        server.shutdown()
    archive.close()  # a PACS behind us sees its associations released
    if trail is not None:
        trail.close()


@click.command()
@click.argument("peer", metavar="AET@HOST:PORT")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds for connect, association and response each.")
@click.pass_context
def echo(ctx: click.Context, peer: str, timeout: float) -> None:
    """C-ECHO a DICOM peer (verification, PS3.4 A) and print the round trip."""
    from ..archive.errors import ArchiveError
    from ..dimse.pool import Peer, Timeouts
    from ..dimse.scu import Scu, ScuOptions
    from ..archive.status import describe
    settings: Settings = ctx.obj["settings"]
    _quiet_pynetdicom(settings)
    if settings.log_level != "DEBUG":
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    try:
        target = Peer.parse(peer, "AET@HOST:PORT", kind="peer")
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    scu = Scu(target, ScuOptions(calling_aet=settings.ae_title,
                                 timeouts=Timeouts(timeout, timeout, timeout), retries=0))
    try:
        seconds = scu.echo()
    except ArchiveError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        scu.close()
    click.echo(f"C-ECHO {settings.ae_title} -> {target}: {describe(0)} in {seconds * 1000:.1f} ms")


COMMANDS = [dimse, echo]
