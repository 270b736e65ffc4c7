"""pynetdicom event handlers of the Q/R SCP: they only adapt.

Each receives the archive and the access gate as bound arguments
(``evt_handlers=[(evt, fn, [archive, gate])]``): the gate says whether the association may
use the service and hands back the archive as its token sees it (a patient compartment);
then the request becomes archive terms, one archive call, and the result datasets and
named statuses (:mod:`gateway.archive.status`); every outcome goes to the audit trail.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Iterator, Mapping

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from ..access.dimse import Service
from ..access.errors import AccessError
from ..access.scopes import DicomOp
from ..archive.protocol import Archive
from ..archive.status import Status
from ..audit.events import Action, Actor, Outcome
from ..dimse import contexts as cx
from ..dimse import sockets
from ..dimse.identifiers import answer, query_from_identifier
from .auditing import actor
from .retrieve import (accepted_pairs, dataset_for, failure, instances_for, refusal,
                       retrieve_paths, status_dataset)
from .security import Gate

ROOTS = {**{uid: "P" for uid in (cx.FIND_MODELS["P"], cx.GET_MODELS["P"], cx.MOVE_MODELS["P"])},
         **{uid: "S" for uid in (cx.FIND_MODELS["S"], cx.GET_MODELS["S"], cx.MOVE_MODELS["S"])}}
AUDIT_KEYS = frozenset({"PatientID", "StudyInstanceUID"})


def _who(event: Event, gate: Gate) -> Actor:
    session = gate.session(event.assoc)
    return actor(session.principal, session.calling_ae or str(event.assoc.requestor.ae_title),
                 session.address or event.assoc.requestor.address)


def _identifier(event: Event) -> bytes | None:
    raw = getattr(event.request, "Identifier", None)
    return raw.getvalue() if isinstance(raw, io.BytesIO) else None


def handle_echo(event: Event, gate: Gate) -> int | Dataset:
    """C-ECHO (PS3.7 9.1.5); 0x0124 for an AE that may not use it."""
    try:
        gate.check(event.assoc, Service.ECHO)
    except AccessError as exc:
        gate.auditor.refused(_who(event, gate), "C-ECHO", Action.READ, exc)
        return refusal(exc)
    return Status.SUCCESS


def handle_find(event: Event, archive: Archive, gate: Gate) -> Iterator:
    """C-FIND (PS3.4 C.4.1.3): identifier → Query → matches with exactly the asked keys,
    only inside the caller's compartment."""
    sop_class = str(event.request.AffectedSOPClassUID)
    try:
        _, view, _ = gate.enter(event.assoc, Service.FIND, DicomOp.C_FIND, archive)
    except AccessError as exc:
        gate.auditor.refused(_who(event, gate), "C-FIND", Action.QUERY, exc, _identifier(event))
        yield refusal(exc), None
        return
    try:
        query, tags = query_from_identifier(event.identifier, ROOTS[sop_class])
        query = dataclasses.replace(query, includefields=query.includefields | AUDIT_KEYS)
        result = view.search(query)
    except Exception as exc:  # undecodable identifier or archive error: say which, never hang
        gate.auditor.find(_who(event, gate), sop_class=sop_class, query=_identifier(event) or b"",
                          syntax=str(event.context.transfer_syntax), matches=[],
                          outcome=Outcome.MINOR_FAILURE, description=str(exc)[:200])
        yield failure(exc), None
        return
    gate.auditor.find(_who(event, gate), sop_class=sop_class, query=_identifier(event) or b"",
                      syntax=str(event.context.transfer_syntax), matches=result.matches)
    for match in result.matches:
        if event.is_cancelled:
            yield Status.CANCEL, None
            return
        yield Status.PENDING, answer(match, tags, query.level)
    yield Status.SUCCESS, None


def handle_get(event: Event, archive: Archive, gate: Gate) -> Iterator:
    """C-GET (PS3.4 C.4.3.3): the instances go back over this association. Another
    patient's UID answers like an unknown one: zero sub-operations."""
    try:
        _, view, _ = gate.enter(event.assoc, Service.GET, DicomOp.C_GET, archive)
        found = instances_for(view, retrieve_paths(event.identifier))
    except Exception as exc:
        _refused_retrieve(event, gate, "C-GET", exc)
        yield 1
        yield (refusal(exc) if isinstance(exc, AccessError) else failure(exc)), None
        return
    yield len(found)
    accepted = accepted_pairs(event.assoc.accepted_contexts)
    patients: dict[str, str | None] = {}
    try:
        yield from _sub_operations(event, found, accepted, patients)
    finally:
        gate.auditor.transferred(_who(event, gate), "C-GET", found, patients)


def _sub_operations(event: Event, found: list, accepted: set,
                    patients: dict[str, str | None]) -> Iterator:
    """One pending status and dataset per instance (PS3.4 C.4.2.1.3); noting each study's
    patient for the audit record; Cancel stops at the next instance."""
    for inst in found:
        if event.is_cancelled:
            yield Status.CANCEL, None
            return
        ds = dataset_for(inst, accepted)
        patients.setdefault(inst.study_uid, str(ds.get("PatientID", "")) or None)
        yield Status.PENDING, ds


def handle_move(event: Event, archive: Archive, gate: Gate,
                known_aes: Mapping[str, tuple[str, int]]) -> Iterator:
    """C-MOVE (PS3.4 C.4.2.3) to a destination listed in KNOWN_AES, else 0xA801."""
    name = str(event.move_destination or "").strip()
    destination = known_aes.get(name)
    if destination is None:
        yield None, None  # pynetdicom answers 0xA801 Move Destination unknown
        return
    try:
        _, view, _ = gate.enter(event.assoc, Service.MOVE, DicomOp.C_MOVE, archive)
        found = instances_for(view, retrieve_paths(event.identifier))
        error: Exception | None = None
    except Exception as exc:
        found, error = [], exc
    store_assoc: list = []
    pairs = [(i.sop_class_uid, i.transfer_syntax) for i in found]
    yield (*destination, {"contexts": cx.storage_requested(pairs) or cx.storage_requested(
        [(cx.RETRIEVE_SOP_CLASSES[0], cx.UNCOMPRESSED[0])]), "max_pdu": 0,
        "evt_handlers": [*sockets.HANDLERS,
                         (evt.EVT_ACCEPTED, lambda e: store_assoc.append(e.assoc))]})
    if error is not None:
        _refused_retrieve(event, gate, "C-MOVE", error)
        yield 1
        yield (refusal(error) if isinstance(error, AccessError) else failure(error)), None
        return
    yield len(found)
    accepted = accepted_pairs(store_assoc[0].accepted_contexts) if store_assoc else set()
    patients: dict[str, str | None] = {}
    to = Actor(calling_ae=name, address=destination[0])
    try:
        yield from _sub_operations(event, found, accepted, patients)
    finally:
        gate.auditor.transferred(_who(event, gate), "C-MOVE", found, patients, destination=to)


def _refused_retrieve(event: Event, gate: Gate, method: str, exc: Exception) -> None:
    if isinstance(exc, AccessError):
        gate.auditor.refused(_who(event, gate), method, Action.READ, exc, _identifier(event))
    else:
        gate.auditor.transferred(_who(event, gate), method, [], {},
                                 outcome=Outcome.MINOR_FAILURE, description=str(exc)[:200])


def handle_store(event: Event, archive: Archive, gate: Gate) -> int | object:
    """C-STORE (PS3.4 B.2.2): stored exactly like an imported file; the failure
    reasons are DIMSE statuses already (0x0111, 0xA700, 0xA900, 0xC000). An instance of
    another patient than the token's is refused with 0x0124 and nothing is stored."""
    who = _who(event, gate)
    try:
        ds = event.dataset
        patient, study = str(ds.get("PatientID", "")) or None, str(ds.get("StudyInstanceUID", ""))
    except Exception:  # undecodable: refused below when a compartment applies, else the archive says why
        patient, study = None, ""
    sop_class = str(event.request.AffectedSOPClassUID)
    try:
        _, view, scope = gate.enter(event.assoc, Service.STORE, DicomOp.C_STORE, archive,
                                    replaces=gate.replaces)
        if scope.patients is not None and (patient is None or patient not in scope.patients):
            raise gate.outside(patient)
    except AccessError as exc:
        gate.auditor.refused(who, "C-STORE", Action.CREATE, exc, patient=patient)
        return refusal(exc)
    try:
        result = view.store(io.BytesIO(event.encoded_dataset()))
    except Exception as exc:  # archive error: its status; anything else: logged, 0xC000
        gate.auditor.stored(who, study=study, patient=patient, sop_class=sop_class,
                            outcome=Outcome.MINOR_FAILURE, description=str(exc)[:200])
        return failure(exc)
    outcome = Outcome.SUCCESS if result.ok else Outcome.MINOR_FAILURE
    gate.auditor.stored(who, study=study, patient=patient, sop_class=sop_class,
                        outcome=outcome, description=None if result.ok else result.message)
    if result.ok:
        return Status.SUCCESS
    return status_dataset(int(result.reason or Status.PROCESSING_FAILURE), result.message)
