"""gateway/limits.py over gunicorn's own HTTP/1.1 parser on a socket pair (the body object
the gthread worker hands the application): the errors a client's body can cause, each as
the HTTP error the faces render, and the upload slots. Fails if gunicorn changes
underneath."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http import RequestParser
from werkzeug.exceptions import BadRequest, ClientDisconnected, RequestTimeout

from gateway.limits import BodyPolicy, GuardedBody, Uploads

POLICY = BodyPolicy(idle=0.3, min_rate=0, slots=2, wait=0.5)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def guarded(server: socket.socket, policy: BodyPolicy = POLICY) -> tuple[GuardedBody, object]:
    """Parse the request head with gunicorn, wrap its body as the middleware does."""
    request = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    length = dict(request.headers).get("CONTENT-LENGTH")
    body = GuardedBody(request.body, int(length) if length else None, server, Uploads(policy))
    return body, request.body


def post(framing: str) -> bytes:
    return f"POST /x HTTP/1.1\r\nHost: h\r\n{framing}\r\n\r\n".encode()


def test_a_whole_body_is_read_and_the_connection_stays_reusable(pair) -> None:
    server, client = pair
    client.sendall(post("Content-Length: 10") + b"0123456789")
    body, raw = guarded(server)
    assert body.read(4) + body.read() == b"0123456789" and body.read() == b""
    assert body.close_request() and not raw.failed
    assert server.gettimeout() is None  # the idle timeout is gone before the answer is sent


def test_a_body_shorter_than_its_content_length_is_client_disconnected(pair) -> None:
    server, client = pair
    client.sendall(post("Content-Length: 100") + b"only this")
    client.shutdown(socket.SHUT_WR)
    body, raw = guarded(server)
    with pytest.raises(ClientDisconnected, match="after 9 of its 100 bytes"):
        body.read()
    assert not body.close_request() and raw.failed  # gunicorn must not reuse it


@pytest.mark.parametrize("chunks, error, words", [
    (b"zz\r\n", BadRequest, "chunk"),
    (b"3\r\nabcX", BadRequest, "chunk"),
    (b"5\r\nab", ClientDisconnected, "went away"),  # cut inside a chunk
])
def test_chunked_framing_errors_are_http_errors(pair, chunks, error, words) -> None:
    server, client = pair
    client.sendall(post("Transfer-Encoding: chunked") + chunks)
    client.shutdown(socket.SHUT_WR)
    body, raw = guarded(server)
    with pytest.raises(error, match=words):
        body.read()
    assert not body.close_request() and raw.failed


def test_a_stalled_body_times_out(pair) -> None:
    server, client = pair
    client.sendall(post("Content-Length: 100") + b"some")
    body, _ = guarded(server)
    with pytest.raises(RequestTimeout, match="BODY_IDLE_TIMEOUT"):
        body.read()


def test_a_body_below_the_minimum_rate_is_cut_though_never_idle(pair) -> None:
    server, client = pair
    policy = BodyPolicy(idle=0.5, min_rate=1 << 20, slots=2, wait=0.5)  # ~0.6 s for a step
    client.sendall(post("Content-Length: 100000") + b"x")
    stop = threading.Event()

    def crawl() -> None:  # a byte every 0.1 s: never idle for 0.5 s
        while not stop.wait(0.1):
            try:
                client.send(b"y")
            except OSError:
                return

    threading.Thread(target=crawl, daemon=True).start()
    body, raw = guarded(server, policy)
    try:
        with pytest.raises(RequestTimeout, match="BODY_MIN_RATE"):
            body.read()
    finally:
        stop.set()
    assert not body.close_request() and raw.failed


def test_upload_slots_wait_for_a_fast_holder_and_refuse_a_slow_one() -> None:
    uploads = Uploads(BodyPolicy(idle=1, min_rate=0, slots=1, wait=0.5))
    first, second, third = (GuardedBody(None, 1, None, uploads) for _ in range(3))
    assert uploads.enter(first)
    threading.Timer(0.1, uploads.leave, [first]).start()
    assert uploads.enter(second)  # the young holder finished meanwhile
    time.sleep(0.6)               # now it has held its slot longer than UPLOAD_WAIT
    assert not uploads.enter(third)
    uploads.leave(second)
    assert uploads.enter(third)
