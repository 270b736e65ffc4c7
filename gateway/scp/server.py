"""The archive as a DICOM Query/Retrieve SCP (`tcia-gateway dimse`).

Services (PS3.4 Annex B and C): Verification; Patient Root and Study Root
C-FIND, C-GET and C-MOVE at every level; Storage of every SOP Class in every
transfer syntax. C-MOVE sends only to the AEs of KNOWN_AES; a calling-AE
allow-list (DIMSE_ALLOWED_AES) rejects other peers at association time.
"""
from __future__ import annotations

import logging

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from ..archive.protocol import Archive
from ..config import Settings, parse_ae_address, parse_hostport
from ..dimse import contexts as cx
from . import handlers, scoping
from ..dimse import sockets

log = logging.getLogger(__name__)


def known_aes(settings: Settings) -> dict[str, tuple[str, int]]:
    """KNOWN_AES ``AET@host:port,...`` → {AET: (host, port)} (C-MOVE destinations)."""
    out: dict[str, tuple[str, int]] = {}
    for item in filter(None, (x.strip() for x in settings.known_aes.split(","))):
        aet, host, port = parse_ae_address(item, "GATEWAY_KNOWN_AES")
        out[aet] = (host, port)
    return out


def allowed_aes(settings: Settings) -> list[str]:
    """DIMSE_ALLOWED_AES: calling AE titles accepted; empty list = anyone."""
    raw = settings.dimse_allowed_aes
    return [x.strip() for x in raw.split(",") if x.strip()]


def build_ae(settings: Settings) -> AE:
    """Our AE with every context we serve; PS3.8 9.3.2: called AE must be ours."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = 0  # no limit on what peers may send us in one PDU
    ae.maximum_associations = settings.dimse_max_associations
    ae.require_called_aet = True
    ae.require_calling_aet = allowed_aes(settings)
    for context in cx.scp_supported():  # AE.supported_contexts= would drop the roles
        ae.add_supported_context(str(context.abstract_syntax), context.transfer_syntax,
                                 scu_role=context.scu_role, scp_role=context.scp_role)
    timeout = settings.dimse_timeout
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30.0, timeout, max(timeout, 60.0)
    return ae


def event_handlers(archive: Archive, settings: Settings) -> list[tuple]:
    """Handlers with the archive (and the move destinations) bound as arguments."""
    by_ae = scoping.scopes(settings)  # DIMSE_AE_COLLECTIONS
    return [
        *sockets.HANDLERS,
        (evt.EVT_C_ECHO, handlers.handle_echo),
        (evt.EVT_C_FIND, scoping.narrowed(handlers.handle_find, by_ae), [archive]),
        (evt.EVT_C_GET, scoping.narrowed(handlers.handle_get, by_ae), [archive]),
        (evt.EVT_C_MOVE, scoping.narrowed(handlers.handle_move, by_ae),
         [archive, known_aes(settings)]),
        (evt.EVT_C_STORE, scoping.narrowed(handlers.handle_store, by_ae), [archive]),
    ]


def start(settings: Settings, archive: Archive, bind: str | None = None) -> ThreadedAssociationServer:
    """Listen on ``bind`` (default DIMSE_BIND) in background threads; returns the server."""
    host, port = parse_hostport(bind or settings.dimse_bind, "GATEWAY_DIMSE_BIND")
    ae = build_ae(settings)
    server = ae.start_server((host, port), block=False,
                             evt_handlers=event_handlers(archive, settings))
    assert server is not None  # block=False returns the running server
    log.info("DIMSE SCP %s listening on %s:%d", settings.ae_title, host, port)
    return server
