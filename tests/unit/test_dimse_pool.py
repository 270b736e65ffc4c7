"""The SCU pool and its errors, against real pynetdicom SCPs on loopback: reuse, the
bound, stale associations, retries with backoff, and a named error for every way a
peer can fail (refused, rejected, silent, failure status, no response)."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from gateway.archive.errors import Unavailable, UpstreamError, UpstreamTimeout
from gateway.dimse.pool import Peer, Timeouts
from gateway.dimse.scu import Scu, ScuOptions
from tests.support.procs import free_port

pytestmark = pytest.mark.timeout(120)
FAST = Timeouts(connect=2, acse=1, dimse=1)


def serve(port: int = 0, *, find=None, called: str = "PACS"):
    """A real pynetdicom SCP: C-ECHO, and C-FIND answered by ``find`` when given."""
    ae = AE(ae_title=called)
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    handlers = [(evt.EVT_C_FIND, find)] if find else []
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)


def scu(port: int, aet: str = "PACS", **kw) -> Scu:
    options = dict(calling_aet="TCIAGW", timeouts=FAST, retries=2, backoff=0.05)
    options.update(kw)
    return Scu(Peer(aet, "127.0.0.1", port), ScuOptions(**options))


@pytest.fixture
def server():
    srv = serve()
    yield srv
    srv.shutdown()


def test_associations_are_reused(server) -> None:
    client = scu(server.server_address[1])
    for _ in range(3):
        client.echo()
    assert (client.qr.opened, client.qr.checkouts) == (1, 3)
    client.close()


def test_pool_never_exceeds_its_bound(server) -> None:
    """Five threads want an association of a pool of two: two hold one, three wait (no
    third is opened), and all five are served by the same two."""
    client = scu(server.server_address[1], pool_size=2)
    held, release, lock, peak = threading.Semaphore(0), threading.Event(), threading.Lock(), [0]

    def hold() -> None:
        with client.qr.checkout(wait=30) as assoc:
            assert assoc.is_established
            with lock:
                peak[0] = max(peak[0], len(server.active_associations))
            held.release()
            release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(5)]
    for t in threads:
        t.start()
    assert held.acquire(timeout=30) and held.acquire(timeout=30)  # two hold one each
    assert not held.acquire(timeout=0.5)  # the other three wait for them
    release.set()
    for t in threads:
        t.join()
    assert sum(held.acquire(timeout=0) for _ in range(3)) == 3
    assert peak[0] <= 2 and client.qr.opened == 2 and client.qr.checkouts == 5
    client.close()


def test_busy_pool_times_out_with_a_clear_message(server) -> None:
    client = scu(server.server_address[1], pool_size=1)
    with client.qr.checkout():
        with pytest.raises(UpstreamTimeout, match="all 1 associations with PACS PACS@127.0.0.1"):
            with client.qr.checkout(wait=0.2):
                pass
    client.close()


def test_association_closed_by_the_peer_is_replaced(server) -> None:
    client = scu(server.server_address[1])
    client.echo()
    server.active_associations[0].abort()
    deadline = time.monotonic() + 5
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.02)
    client.echo()
    assert client.qr.opened == 2
    client.close()


def test_refused_connection_is_unavailable_after_retries() -> None:
    port = free_port()
    client = scu(port)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=f"PACS PACS@127.0.0.1:{port} is unreachable"):
        client.echo()
    assert time.monotonic() - started >= 0.05 + 0.1  # two backoffs before giving up


def test_peer_that_comes_up_during_the_backoff_is_reached() -> None:
    port = free_port()
    late: list = []
    timer = threading.Timer(0.15, lambda: late.append(serve(port)))
    timer.start()
    try:
        assert scu(port, retries=5, backoff=0.1).echo() >= 0
    finally:
        timer.join()
        for srv in late:
            srv.shutdown()


def test_rejected_association_names_the_reason(server) -> None:
    client = scu(server.server_address[1], aet="WRONG")
    with pytest.raises(UpstreamError, match="rejected the association from TCIAGW.*Called AE title"):
        client.echo()


def test_silent_peer_times_out() -> None:
    with socket.socket() as listener:  # accepts the TCP connection, never answers A-ASSOCIATE
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        client = scu(listener.getsockname()[1], retries=0)
        with pytest.raises(UpstreamTimeout, match="did not answer the association request within 1 s"):
            client.echo()


def _find_identifier() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel, ds.StudyInstanceUID = "STUDY", ""
    return ds


def test_failure_status_is_named() -> None:
    def refuse(event):
        status = Dataset()
        status.Status, status.ErrorComment = 0xA900, "no such attribute"
        yield status, None

    srv = serve(find=refuse)
    try:
        with pytest.raises(UpstreamError, match="C-FIND with 0xA900 .*no such attribute") as err:
            scu(srv.server_address[1]).find(_find_identifier())
        assert err.value.status == 0xA900
    finally:
        srv.shutdown()


def test_missing_response_is_a_timeout() -> None:
    def stall(event):
        time.sleep(3)
        yield 0x0000, None

    srv = serve(find=stall)
    try:
        with pytest.raises(UpstreamTimeout, match="no C-FIND response within 1 s"):
            scu(srv.server_address[1], retries=0).find(_find_identifier())
    finally:
        srv.shutdown()
