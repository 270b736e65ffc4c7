"""The TCP_NODELAY hook rests on a pynetdicom contract: EVT_CONN_OPEN fires with the
OS socket reachable as ``event.assoc.dul.socket.socket``, before the first PDU, for
outgoing and accepted connections alike. If a pynetdicom upgrade breaks any part of
that, these tests fail (and gateway/dimse/sockets.py must find a new hook)."""
from __future__ import annotations

import socket

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from gateway.dimse import sockets

pytestmark = pytest.mark.timeout(60)


def _server(handlers: list) -> tuple:
    ae = AE(ae_title="SCP")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    return server, server.server_address[1]


def _recorder(log: list, side: str):
    def on_open(event) -> None:
        sock = sockets.raw_socket(event)
        log.append((side, "open", isinstance(sock, socket.socket)
                    and sockets.nodelay_enabled(sock)))
    return on_open


def test_nodelay_set_on_both_sides_before_the_first_pdu() -> None:
    log: list = []
    server, port = _server([*sockets.HANDLERS, (evt.EVT_CONN_OPEN, _recorder(log, "acceptor")),
                            (evt.EVT_PDU_SENT, lambda e: log.append(("acceptor", "pdu", None)))])
    try:
        ae = AE(ae_title="SCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="SCP", evt_handlers=[
            *sockets.HANDLERS, (evt.EVT_CONN_OPEN, _recorder(log, "requestor")),
            (evt.EVT_PDU_SENT, lambda e: log.append(("requestor", "pdu", None)))])
        assert assoc.is_established
        assert sockets.nodelay_enabled(assoc.dul.socket.socket)
        assert assoc.send_c_echo().Status == 0x0000
        acceptor = server.active_associations[0]
        assert sockets.nodelay_enabled(acceptor.dul.socket.socket)
        assoc.release()
    finally:
        server.shutdown()
    for side in ("requestor", "acceptor"):
        events = [(kind, ok) for s, kind, ok in log if s == side]
        assert events[0] == ("open", True), f"{side}: EVT_CONN_OPEN must come first, with the socket"
        assert ("pdu", None) in events


def test_without_the_hook_nagle_stays_on() -> None:
    """The hook is what sets the option: pynetdicom alone leaves Nagle's algorithm on."""
    server, port = _server([])
    try:
        ae = AE(ae_title="SCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="SCP")
        assert assoc.is_established
        assert not sockets.nodelay_enabled(assoc.dul.socket.socket)
        assert not sockets.nodelay_enabled(server.active_associations[0].dul.socket.socket)
        assoc.release()
    finally:
        server.shutdown()
