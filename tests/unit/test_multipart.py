"""Byte-level tests of the multipart/related codec (PS3.18 8.6.1.2, RFC 2046 5.1):
the quirks Cornerstone and dicomweb-client depend on, and streaming parsing."""
from __future__ import annotations

import io
import os

import pytest
from dicomweb_client import DICOMwebClient

from gateway.dicomweb import multipart
from gateway.dicomweb.media import parse_media_type
from gateway.dicomweb.multipart import MAX_HEADER_BYTES, MultipartError, MultipartReader

TS = "1.2.840.10008.1.2.1"


def parse(body: bytes, boundary: str, read_size: int = 1 << 20,
          chunk: int = 1 << 20) -> list[tuple[dict, bytes]]:
    src = io.BytesIO(body)
    reader = MultipartReader(lambda n: src.read(min(n, read_size)), boundary, chunk=chunk)
    return [(p.headers, b"".join(p.chunks())) for p in reader.parts()]


# ------------------------------------------------------------------ writer
def test_writer_has_no_preamble_exact_header_spelling_and_crlf_before_close() -> None:
    body = multipart.encode([(f"application/octet-stream; transfer-syntax={TS}", b"AB"),
                             (f"application/octet-stream; transfer-syntax={TS}", b"CD")], "xyz")
    assert body == (b"--xyz\r\nContent-Type: application/octet-stream; transfer-syntax="
                    + TS.encode() + b"\r\n\r\nAB"
                    b"\r\n--xyz\r\nContent-Type: application/octet-stream; transfer-syntax="
                    + TS.encode() + b"\r\n\r\nCD"
                    b"\r\n--xyz--\r\n")


def test_response_content_type_quotes_the_type_and_names_the_boundary() -> None:
    ct = multipart.content_type("application/octet-stream", "b0")
    assert ct == 'multipart/related; type="application/octet-stream"; boundary=b0'


def test_stream_keeps_large_bodies_in_their_own_chunks() -> None:
    big = os.urandom(multipart.SMALL + 10)
    chunks = list(multipart.stream([("application/dicom", [big, b"tail"])], "b"))
    assert big in chunks  # never copied into a bigger buffer
    assert b"".join(chunks).startswith(b"--b\r\nContent-Type: application/dicom\r\n\r\n")


def test_stream_length_is_exact() -> None:
    parts = [("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", b"x" * 1000),
             ("application/dicom", b""), ("image/jp2", b"abc")]
    body = multipart.encode(parts, "bnd")
    assert multipart.stream_length([(t, len(b)) for t, b in parts], "bnd") == len(body)
    assert multipart.stream_length([], "bnd") == len(multipart.encode([], "bnd"))


def test_empty_message_is_well_formed() -> None:
    assert multipart.encode([], "b") == b"--b--\r\n"
    assert parse(b"--b--\r\n", "b") == []


# ------------------------------------------------------------------ reader
def test_round_trip_with_payloads_that_look_like_delimiters() -> None:
    # Near-misses only: a body may never contain CRLF--boundary itself (RFC 2046 5.1.1).
    nasty = [b"\r\n--bn", b"-bnd--", b"\r\n-", b"\r\n\r\n", b"x\r", os.urandom(300_000),
             b"", b"ends like a delimiter\r\n--bn"]
    body = multipart.encode([("application/dicom", p) for p in nasty], "bnd")
    for read_size in (1, 3, 7, 64, 1 << 20):
        got = parse(body, "bnd", read_size=read_size, chunk=5 if read_size < 64 else 1 << 16)
        assert [b for _h, b in got] == nasty
        assert all(h == {"content-type": "application/dicom"} for h, _b in got)


def test_reads_what_dicomweb_client_sends_with_a_quoted_boundary() -> None:
    ctype = ('multipart/related; type="application/dicom"; '
             'boundary="0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"')
    payloads = [os.urandom(5000), os.urandom(10)]
    body = DICOMwebClient._encode_multipart_message(payloads, ctype)
    assert body.startswith(b"\r\n--")  # the client's leading CRLF, a preamble to us
    boundary = parse_media_type(ctype).params["boundary"]
    assert boundary == "0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"
    assert [b for _h, b in parse(body, boundary)] == payloads


def test_header_names_in_any_case_padding_and_preamble() -> None:
    body = (b"this is a preamble\r\n--b  \t\r\nCONTENT-TYPE: application/dicom\r\n"
            b"content-length: 3\r\n\r\nabc\r\n--b\r\n\r\nno headers\r\n--b--\r\nepilogue")
    got = parse(body, "b")
    assert got[0] == ({"content-type": "application/dicom", "content-length": "3"}, b"abc")
    assert got[1] == ({}, b"no headers")


def test_unread_part_bodies_are_skipped() -> None:
    body = multipart.encode([("a/b", b"1" * 5000), ("c/d", b"2")], "q")
    src = io.BytesIO(body)
    parts = MultipartReader(src.read, "q", chunk=100).parts()
    first = next(parts)
    second = next(parts)  # first body never read
    assert first.content_type == "a/b" and b"".join(second.chunks()) == b"2"


@pytest.mark.parametrize("body, message", [
    (b"", "no boundary"),
    (b"garbage without any delimiter" * 5000, "no multipart boundary"),
    (b"--b\r\nContent-Type: a/b\r\n\r\nabc", "before the closing boundary"),
    (b"--b\r\nContent-Type: a/b", "inside part headers"),
    (b"--bX\r\n\r\nabc\r\n--b--", "garbage after"),
])
def test_malformed_bodies_raise(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse(body, "b")


def test_invalid_boundary_is_refused() -> None:
    with pytest.raises(MultipartError):
        MultipartReader(io.BytesIO(b"").read, "")


@pytest.mark.parametrize("ctype", [
    'multipart/related; type="application/dicom"; boundary="q-b"',
    "multipart/related; type=application/dicom; boundary=q-b",
    'Multipart/Related;Type=application/dicom;Boundary="q-b"',
])
def test_request_content_type_quoted_or_bare(ctype: str) -> None:
    from gateway.dicomweb.stow import boundary_of
    parsed = parse_media_type(ctype)
    assert parsed.inner == "application/dicom" and boundary_of(ctype) == "q-b"
    body = multipart.encode([("application/dicom", b"DICM")], "q-b")
    assert parse(body, boundary_of(ctype)) == [({"content-type": "application/dicom"}, b"DICM")]


def test_segments_frame_opaque_bodies_exactly_as_stream() -> None:
    """The zero-copy retrieve sends its files between these segments itself."""
    parts = [("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", b"x" * 70_000),
             ("application/dicom", b""), ("application/dicom", b"abc")]
    segments = multipart.segments(parts, "bnd")
    assert segments[1::2] == [b for _t, b in parts]
    assert b"".join(segments) == multipart.encode(parts, "bnd")
    assert b"".join(multipart.segments([], "bnd")) == multipart.encode([], "bnd")


def _with_header_block(size: int) -> bytes:
    """A one-part message whose header block is exactly ``size`` bytes."""
    name = b"Content-Type: a/b\r\nX-Pad: "
    return b"--b\r\n" + name + b"p" * (size - len(name)) + b"\r\n\r\nbody\r\n--b--\r\n"


@pytest.mark.parametrize("read_size", [1, 5, 1 << 20])  # a byte at a time .. all in one read
def test_part_header_limit_holds_however_the_bytes_arrive(read_size: int) -> None:
    limit = MAX_HEADER_BYTES
    assert parse(_with_header_block(limit), "b", read_size=read_size)[0][1] == b"body"
    with pytest.raises(MultipartError, match=f"longer than {limit} bytes"):
        parse(_with_header_block(limit + 1), "b", read_size=read_size)


def test_part_header_limit_is_the_callers() -> None:
    body = _with_header_block(600)
    reader = MultipartReader(io.BytesIO(body).read, "b", max_header_bytes=599)
    with pytest.raises(MultipartError, match="longer than 599 bytes"):
        list(reader.parts())
