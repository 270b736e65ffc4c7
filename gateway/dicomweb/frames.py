"""WADO-RS frames and bulk data (PS3.18 10.4.1.1.4-5, 8.7.3.3).

Frames are numbered from 1; a single-frame image has frame 1. Each part carries
``transfer-syntax=`` (Cornerstone reads it to choose a codec). Stored frames go out
byte for byte from the frame table; native pixels of compressed frames are decoded
one frame at a time while the response streams.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator

import pydicom
from flask import Response

from ..archive.errors import InvalidQuery, NotAcceptable, NotFound
from ..archive.protocol import StoredInstance
from . import multipart, pixels
from .media import EXPLICIT_LE, OCTET, FrameChoice, MediaRange, frame_choice, part_type
from .zerocopy import check_stored

PIXEL_TAGS = ("7FE00010", "7FE00008", "7FE00009")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_NUMBER = re.compile(r"^[0-9]{1,9}$")  # ASCII digits only: int() also takes "²", "1_0", "+1"


def parse_frame_list(text: str, max_frames: int | None = None) -> list[int]:
    """``1,2,5`` → [1, 2, 5] (PS3.18 8.3.1: a comma-separated list of frame numbers).

    No number twice, and at most ``max_frames`` of them: ``1,1,1,…`` in a 4 KB URL would
    otherwise ask for one frame a thousand times."""
    items = [n.strip() for n in text.replace("%2C", ",").replace("%2c", ",").split(",")]
    if any(not _NUMBER.match(n) for n in items if n):
        raise InvalidQuery(f"frame list {text[:100]!r}: expected numbers separated by commas",
                           "frames")
    numbers = [int(n) for n in items if n]
    if not numbers:
        raise InvalidQuery("empty frame list", "frames")
    if max_frames is not None and len(numbers) > max_frames:
        raise InvalidQuery(f"{len(numbers)} frames asked for in one request; at most "
                           f"{max_frames} (MAX_FRAMES_PER_REQUEST)", "frames")
    seen: set[int] = set()
    for n in numbers:
        if n in seen:
            raise InvalidQuery(f"frame {n} is listed more than once", "frames")
        seen.add(n)
    return numbers


def _check_frames(inst: StoredInstance, numbers: list[int]) -> None:
    count = inst.number_of_frames
    if count == 0:
        raise NotFound(f"instance {inst.sop_uid} has no pixel data frames")
    if len(numbers) > count:
        raise InvalidQuery(f"{len(numbers)} frames asked for; instance {inst.sop_uid} has "
                           f"{count}", "frames")
    for n in numbers:
        if not 1 <= n <= count:
            raise NotFound(f"frame {n} does not exist: instance {inst.sop_uid} has {count} "
                           f"frame(s), numbered from 1")


def _choice(inst: StoredInstance, ranges: list[MediaRange]) -> FrameChoice:
    choice = frame_choice(ranges, inst.transfer_syntax)
    if choice is None:
        raise NotAcceptable(
            f"frames of {inst.sop_uid} are stored as {inst.transfer_syntax}; available as that "
            "(transfer-syntax=* or its own media type) or as application/octet-stream with "
            "transfer-syntax=1.2.840.10008.1.2.1 (decoded)")
    return choice


def _reader(choice: FrameChoice) -> Callable[[StoredInstance, int], bytes]:
    return pixels.native_frame if choice.decode else pixels.stored_frame


def frames_response(inst: StoredInstance, numbers: list[int],
                    ranges: list[MediaRange]) -> Response:
    """multipart/related, one part per requested frame, in the order asked."""
    _check_frames(inst, numbers)
    choice = _choice(inst, ranges)
    check_stored([inst])
    read = _reader(choice)
    ctype = part_type(choice.media, choice.syntax)
    boundary = multipart.new_boundary()
    # an object store's first frame is read now: down or hung, it is a 503, not a cut 200
    first = [read(inst, numbers[0])] if inst.remote is not None and numbers else None
    parts = ((ctype, first if i == 0 and first else _lazy(read, inst, n))
             for i, n in enumerate(numbers))
    response = Response(multipart.stream(parts, boundary), direct_passthrough=True)
    response.headers["Content-Type"] = multipart.content_type(choice.media, boundary)
    if not choice.decode and inst.frames is not None:
        sizes = [sum(f.length for f in inst.frames[n - 1]) for n in numbers]
        response.headers["Content-Length"] = str(
            multipart.stream_length([(ctype, s) for s in sizes], boundary))
    return response


def _lazy(read: Callable[[StoredInstance, int], bytes], inst: StoredInstance,
          number: int) -> Iterator[bytes]:
    yield read(inst, number)


def bulk_response(inst: StoredInstance, tag: str, ranges: list[MediaRange]) -> Response:
    """The bulk data behind a BulkDataURI of the stored metadata."""
    if not _TAG.match(tag):
        raise NotFound(f"no bulk data {tag!r}: expected an 8-digit hexadecimal tag")
    tag = tag.upper()
    check_stored([inst])
    if tag in PIXEL_TAGS:
        return _pixel_bulk(inst, ranges)
    value = _element_bytes(inst, tag)
    if _single_part(ranges):
        return Response(value, mimetype=OCTET)
    choice = frame_choice(ranges, EXPLICIT_LE)
    if choice is None or choice.media != OCTET:
        raise NotAcceptable(f"bulk data {tag} is available as application/octet-stream only")
    boundary = multipart.new_boundary()
    response = Response(multipart.encode([(OCTET, value)], boundary))
    response.headers["Content-Type"] = multipart.content_type(OCTET, boundary)
    return response


def _single_part(ranges: list[MediaRange]) -> bool:
    return bool(ranges) and ranges[0].mime == OCTET


def _pixel_bulk(inst: StoredInstance, ranges: list[MediaRange]) -> Response:
    """Native pixel data as one part; encapsulated pixel data as one part per frame."""
    if inst.number_of_frames == 0:
        raise NotFound(f"instance {inst.sop_uid} has no pixel data")
    choice = _choice(inst, ranges)
    numbers = list(range(1, inst.number_of_frames + 1))
    if choice.syntax != EXPLICIT_LE:
        return frames_response(inst, numbers, ranges)
    read = _reader(choice)
    chunks = (read(inst, n) for n in numbers)
    if _single_part(ranges):
        return Response(chunks, mimetype=OCTET, direct_passthrough=True)
    boundary = multipart.new_boundary()
    response = Response(multipart.stream([(part_type(OCTET, choice.syntax), chunks)], boundary),
                        direct_passthrough=True)
    response.headers["Content-Type"] = multipart.content_type(OCTET, boundary)
    return response


def _element_bytes(inst: StoredInstance, tag: str) -> bytes:
    """A large non-pixel value (overlay, ICC profile, waveform...), read on demand."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(inst.local()), defer_size=1024, stop_before_pixels=True)
        elem = ds.get(int(tag, 16))
        value = None if elem is None else elem.value
    if not isinstance(value, (bytes, bytearray)):
        raise NotFound(f"instance {inst.sop_uid} has no bulk data element {tag}")
    return bytes(value)
