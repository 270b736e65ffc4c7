"""DIMSE_AE_COLLECTIONS: the collections each calling AE sees through the SCP.

Each Q/R and Storage handler is wrapped so that it receives the archive as the calling AE's
scope sees it (``Archive.scoped``); the handlers themselves stay unchanged. C-FIND answers
only the AE's collections (filtered, not failed, like every scope), C-GET/C-MOVE of another
collection's UID answers like an unknown UID, a C-STORE outside is refused 0x0124 (the
archive's refusal). An AE not listed, with no ``*`` entry, sees everything.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from pynetdicom.events import Event

from ..archive.protocol import Archive
from ..archive.scope import Scope
from ..config import Settings, ae_collections


def scopes(settings: Settings) -> dict[str, Scope]:
    return {aet: Scope(collections=names)
            for aet, names in ae_collections(settings.dimse_ae_collections).items()}


def calling_ae(event: Event) -> str:
    title = event.assoc.requestor.ae_title
    return (title.decode("ascii", "replace") if isinstance(title, bytes) else str(title)).strip()


def scope_for(event: Event, by_ae: Mapping[str, Scope]) -> Scope | None:
    return by_ae.get(calling_ae(event), by_ae.get("*"))


def narrowed(handler: Callable[..., Any], by_ae: Mapping[str, Scope]) -> Callable[..., Any]:
    """``handler(event, archive, *rest)`` with the archive the calling AE may see."""
    if not by_ae:
        return handler

    def scoped_handler(event: Event, archive: Archive, *rest: Any) -> Any:
        scope = scope_for(event, by_ae)
        return handler(event, archive if scope is None else archive.scoped(scope), *rest)

    scoped_handler.__name__ = handler.__name__
    scoped_handler.__doc__ = handler.__doc__
    return scoped_handler
