"""pynetdicom event handlers of the Q/R SCP: they only adapt.

Each receives the archive as a bound argument (``evt_handlers=[(evt, fn, [archive])]``),
turns the request into archive terms, makes one archive call, and turns the
result into datasets and named statuses (:mod:`gateway.archive.status`).
"""
from __future__ import annotations

import io
from typing import Iterator, Mapping

from pynetdicom import evt
from pynetdicom.events import Event

from ..archive.protocol import Archive
from ..dimse import contexts as cx
from ..dimse import sockets
from ..dimse.identifiers import answer, query_from_identifier
from .retrieve import (accepted_pairs, dataset_for, failure, instances_for, retrieve_paths,
                       status_dataset)
from ..archive.status import Status

ROOTS = {**{uid: "P" for uid in (cx.FIND_MODELS["P"], cx.GET_MODELS["P"], cx.MOVE_MODELS["P"])},
         **{uid: "S" for uid in (cx.FIND_MODELS["S"], cx.GET_MODELS["S"], cx.MOVE_MODELS["S"])}}


def handle_echo(event: Event) -> int:
    """C-ECHO (PS3.7 9.1.5)."""
    return Status.SUCCESS


def handle_find(event: Event, archive: Archive) -> Iterator:
    """C-FIND (PS3.4 C.4.1.3): identifier → Query → matches with exactly the asked keys."""
    try:
        query, tags = query_from_identifier(event.identifier,
                                            ROOTS[str(event.request.AffectedSOPClassUID)])
        result = archive.search(query)
    except Exception as exc:  # undecodable identifier or archive error: say which, never hang
        yield failure(exc), None
        return
    for match in result.matches:
        if event.is_cancelled:
            yield Status.CANCEL, None
            return
        yield Status.PENDING, answer(match, tags, query.level)
    yield Status.SUCCESS, None


def handle_get(event: Event, archive: Archive) -> Iterator:
    """C-GET (PS3.4 C.4.3.3): the instances go back over this association."""
    try:
        found = instances_for(archive, retrieve_paths(event.identifier))
    except Exception as exc:
        yield 1
        yield failure(exc), None
        return
    yield len(found)
    accepted = accepted_pairs(event.assoc.accepted_contexts)
    for inst in found:
        if event.is_cancelled:
            yield Status.CANCEL, None
            return
        yield Status.PENDING, dataset_for(inst, accepted)


def handle_move(event: Event, archive: Archive,
                known_aes: Mapping[str, tuple[str, int]]) -> Iterator:
    """C-MOVE (PS3.4 C.4.2.3) to a destination listed in KNOWN_AES, else 0xA801."""
    destination = known_aes.get(str(event.move_destination or "").strip())
    if destination is None:
        yield None, None  # pynetdicom answers 0xA801 Move Destination unknown
        return
    try:
        found = instances_for(archive, retrieve_paths(event.identifier))
        error = None
    except Exception as exc:
        found, error = [], exc
    store_assoc: list = []
    pairs = [(i.sop_class_uid, i.transfer_syntax) for i in found]
    yield (*destination, {"contexts": cx.storage_requested(pairs) or cx.storage_requested(
        [(cx.RETRIEVE_SOP_CLASSES[0], cx.UNCOMPRESSED[0])]), "max_pdu": 0,
        "evt_handlers": [*sockets.HANDLERS,
                         (evt.EVT_ACCEPTED, lambda e: store_assoc.append(e.assoc))]})
    if error is not None:
        yield 1
        yield failure(error), None
        return
    yield len(found)
    accepted = accepted_pairs(store_assoc[0].accepted_contexts) if store_assoc else set()
    for inst in found:
        if event.is_cancelled:
            yield Status.CANCEL, None
            return
        yield Status.PENDING, dataset_for(inst, accepted)


def handle_store(event: Event, archive: Archive) -> int | object:
    """C-STORE (PS3.4 B.2.2): stored exactly like an imported file; the failure
    reasons are DIMSE statuses already (0x0111, 0xA700, 0xA900, 0xC000)."""
    try:
        result = archive.store(io.BytesIO(event.encoded_dataset()))
    except Exception as exc:  # archive error: its status; anything else: logged, 0xC000
        return failure(exc)
    if result.ok:
        return Status.SUCCESS
    return status_dataset(int(result.reason or Status.PROCESSING_FAILURE), result.message)
