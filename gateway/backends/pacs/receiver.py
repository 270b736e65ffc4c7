"""Our Storage SCP as C-MOVE destination (PS3.4 C.4.2.2.1): where the PACS sends
the instances we asked it to move to our AE title.

Several processes (gunicorn workers, the `dimse` SCP) may front the same PACS
with the same data dir, but only one can listen on the port the PACS knows: the
first to bind it serves everyone, storing into the shared cache; the others see
EADDRINUSE and rely on it (the C-MOVE final response comes only after every
sub-operation was answered, i.e. after the instances are in the cache).
"""
from __future__ import annotations

import errno
import logging
import threading
from typing import Callable

from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from ...dimse import contexts as cx
from ...dimse import sockets

log = logging.getLogger(__name__)


class MoveReceiver:
    """Accepts C-STORE from the PACS only (calling AE allow-list) and hands each
    instance to ``sink`` (which stores it and returns a C-STORE status)."""

    def __init__(self, ae_title: str, bind: tuple[str, int], pacs_aet: str,
                 sink: Callable[[Event], int]) -> None:
        self.ae_title, self.bind, self.pacs_aet, self.sink = ae_title, bind, pacs_aet, sink
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()
        self.owner = False  # True when this process is the one listening

    def ensure_running(self) -> None:
        """Listen if nobody does yet; EADDRINUSE means another process of ours listens."""
        with self._lock:
            if self._server is not None:
                return
            ae = AE(ae_title=self.ae_title)
            ae.maximum_pdu_size = 0
            ae.require_calling_aet = [self.pacs_aet]
            for context in cx.scp_supported():
                if context.abstract_syntax not in cx.QR_MODELS:
                    ae.add_supported_context(str(context.abstract_syntax), context.transfer_syntax)
            handlers = [*sockets.HANDLERS, (evt.EVT_C_STORE, self.sink)]
            try:
                self._server = ae.start_server(self.bind, block=False, evt_handlers=handlers)
                self.owner = True
                log.info("C-MOVE destination %s listening on %s:%d", self.ae_title, *self.bind)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                log.debug("C-MOVE destination port %d is served by another process", self.bind[1])

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server = None
                self.owner = False
