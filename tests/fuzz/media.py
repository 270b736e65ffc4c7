"""Fuzz media-type and Accept parsing and the negotiation built on them (PS3.18 8.7).

Input: byte 0 picks a stored transfer syntax, the rest is an Accept header (latin-1, as
HTTP carries it). Contract: parsing gives ranges with 0 < q <= 1, best first, or raises
MediaError; every negotiation function then answers without raising, with a choice that
is one of the alternatives it was offered.
"""
from __future__ import annotations

from tests.fuzz._harness import instrumented, ints, main

with instrumented(__name__):
    from gateway.dicomweb import media
    from gateway.dicomweb.media import MediaError

STORED = (media.EXPLICIT_LE, media.IMPLICIT_LE, media.EXPLICIT_BE, media.DEFLATED_LE,
          "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90",
          "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.100", "1.2.3.4")


def check(data: bytes) -> None:
    (selector,), rest = ints(data, 1)
    header = rest.decode("latin-1")
    stored = STORED[selector % len(STORED)]
    try:
        media.parse_media_type(header)
    except MediaError:
        pass
    try:
        ranges = media.parse_accept(header)
    except MediaError:
        return
    qs = [r.q for r in ranges]
    assert all(0 < q <= 1 for q in qs) and qs == sorted(qs, reverse=True), qs
    assert all(r.mime == r.mime.lower() and all(k == k.lower() for k in r.params) for r in ranges)
    _negotiate(ranges, stored)
    try:
        rendered = media.rendered_type([], accept_param=header)
    except MediaError:
        rendered = None
    assert rendered in (None, *media.RENDERED_TYPES)


def _negotiate(ranges: list[media.MediaRange], stored: str) -> None:
    assert media.json_type(ranges) in (None, media.DICOM_JSON, media.JSON)
    assert media.rendered_type(ranges) in (None, *media.RENDERED_TYPES)
    choices = media.dicom_choices(ranges)
    offered = {c.syntax for c in choices}
    chosen = media.choose_syntax(choices, stored, lambda s, t: t in media.UNCOMPRESSED or t == s)
    assert chosen is None or chosen == stored or chosen in offered \
        or chosen == media.default_syntax(stored), (chosen, offered)
    frame = media.frame_choice(ranges, stored)
    if frame is not None:
        assert frame.syntax in (stored, media.EXPLICIT_LE, media.stored_frame_syntax(stored))
        assert "/" in frame.media and not (frame.decode and frame.syntax != media.EXPLICIT_LE)
        media.part_type(frame.media, frame.syntax).encode("latin-1")


if __name__ == "__main__":
    main(check)
