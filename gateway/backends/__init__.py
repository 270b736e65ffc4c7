"""Choosing the archive backend: the embedded archive, a PACS in front of it (``pacs``), or
NCI Imaging Data Commons' buckets (``idc``)."""
from __future__ import annotations

from ..archive.local import open_local
from ..archive.protocol import Archive
from ..config import Settings


def open_archive(settings: Settings) -> Archive:
    """The backend the settings ask for: the embedded archive, or the PACS named by PACS."""
    if settings.backend == "idc":
        from .idc import open_idc
        return open_idc(settings)
    if settings.pacs:
        from .pacs.archive import RemoteArchive
        return RemoteArchive(settings, cache=open_local(settings))
    return open_local(settings)
