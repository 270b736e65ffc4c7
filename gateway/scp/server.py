"""The archive as a DICOM Query/Retrieve SCP (`tcia-gateway dimse`).

Services (PS3.4 Annex B and C): Verification; Patient Root and Study Root
C-FIND, C-GET and C-MOVE at every level; Storage of every SOP Class in every
transfer syntax. C-MOVE sends only to the AEs of KNOWN_AES. Access control
(`security.Gate`, docs/security.md): calling-AE allow-list and peer hosts, User Identity,
per-AE services, token scopes and compartments; a DICOM TLS listener (PS3.15 B.12) on
DIMSE_TLS_BIND beside the plain one, both served by one AE with one gate.
"""
from __future__ import annotations

import logging

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from ..access.tls import server_context
from ..archive.protocol import Archive
from ..audit.trail import AuditTrail
from ..config import Settings, SettingsError, parse_ae_address, parse_hostport
from ..dimse import contexts as cx
from ..dimse import sockets
from . import handlers, scoping
from .auditing import Auditor
from .security import Gate

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


def event_handlers(archive: Archive, settings: Settings, gate: Gate | None = None, *,
                   tls: bool = False) -> list[tuple]:
    """Handlers with the archive, the gate (and the move destinations) bound as arguments;
    the archive each one gets is the calling AE's collections (DIMSE_AE_COLLECTIONS), which
    the gate narrows further to the token's compartment."""
    gate = gate or Gate(settings, Auditor(None, settings.ae_title))
    by_ae = scoping.scopes(settings)
    return [
        *sockets.HANDLERS,
        (evt.EVT_REQUESTED, gate.on_requested, [tls]),
        (evt.EVT_C_ECHO, handlers.handle_echo, [gate]),
        (evt.EVT_C_FIND, scoping.narrowed(handlers.handle_find, by_ae), [archive, gate]),
        (evt.EVT_C_GET, scoping.narrowed(handlers.handle_get, by_ae), [archive, gate]),
        (evt.EVT_C_MOVE, scoping.narrowed(handlers.handle_move, by_ae),
         [archive, gate, known_aes(settings)]),
        (evt.EVT_C_STORE, scoping.narrowed(handlers.handle_store, by_ae), [archive, gate]),
    ]


def start(settings: Settings, archive: Archive, bind: str | None = None, *,
          trail: AuditTrail | None = None) -> ThreadedAssociationServer:
    """The plain listener of `listen` (tests and callers that want one server)."""
    return listen(settings, archive, bind, trail=trail)[0]


def listen(settings: Settings, archive: Archive, bind: str | None = None, *,
           trail: AuditTrail | None = None) -> list[ThreadedAssociationServer]:
    """Listen on ``bind`` (default DIMSE_BIND) and, when set, DIMSE_TLS_BIND, in background
    threads; `trail` receives the audit records (None: not audited)."""
    host, port = parse_hostport(bind or settings.dimse_bind, "GATEWAY_DIMSE_BIND")
    ae = build_ae(settings)
    gate = Gate.build(settings, Auditor(trail, settings.ae_title, host))
    context = None
    if settings.dimse_tls_bind:
        try:
            context = server_context(settings.dimse_tls_cert, settings.dimse_tls_key,
                                     settings.dimse_tls_ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SettingsError(f"DIMSE TLS certificate or key: {exc}") from exc
    plain = ae.start_server((host, port), block=False,
                            evt_handlers=event_handlers(archive, settings, gate))
    assert plain is not None  # block=False returns the running server
    servers = [plain]
    if context is not None:
        tls_host, tls_port = parse_hostport(settings.dimse_tls_bind, "GATEWAY_DIMSE_TLS_BIND")
        try:
            secure = ae.start_server((tls_host, tls_port), block=False, ssl_context=context,
                                     evt_handlers=event_handlers(archive, settings, gate, tls=True))
        except BaseException:
            plain.shutdown()
            raise
        assert secure is not None
        servers.append(secure)
    log.info("DIMSE SCP %s listening on %s:%d%s", settings.ae_title, host, port,
             f" and TLS {settings.dimse_tls_bind}" if context else "")
    return servers
