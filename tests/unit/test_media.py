"""Accept / Content-Type parsing and negotiation as real clients spell them (PS3.18 8.7)."""
from __future__ import annotations

import pytest

from gateway.dicomweb import media
from gateway.dicomweb.media import (
    EXPLICIT_LE,
    OCTET,
    FrameChoice,
    MediaError,
    choose_syntax,
    dicom_choices,
    frame_choice,
    json_type,
    parse_accept,
    parse_media_type,
    rendered_type,
)

J2K = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
JPEG = "1.2.840.10008.1.2.4.50"


def always(_src: str, _dst: str) -> bool:
    return True


@pytest.mark.parametrize("header", [
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    "multipart/related; type=application/dicom; transfer-syntax=*",
    'multipart/related;type="application/dicom";transfer-syntax="*"',
    'MULTIPART/Related; Type="application/dicom"; Transfer-Syntax=*',
])
def test_quoted_and_bare_parameters_mean_the_same(header: str) -> None:
    [r] = parse_accept(header)
    assert (r.mime, r.inner, r.transfer_syntax) == ("multipart/related", "application/dicom", "*")


def test_q_values_order_alternatives_stably() -> None:
    ranges = parse_accept("image/png;q=0.5, image/jpeg, */*;q=0.1, image/gif;q=0.5, text/x;q=0")
    assert [r.mime for r in ranges] == ["image/jpeg", "image/png", "image/gif", "*/*"]


def test_quoted_commas_do_not_split_alternatives() -> None:
    [r] = parse_accept('multipart/related; type="a/b"; note="x, y"')
    assert r.params["note"] == "x, y"


@pytest.mark.parametrize("bad", ["nonsense", "a/b; q=2", "a/b; q=x", "a/b; noequals"])
def test_malformed_headers_are_errors(bad: str) -> None:
    with pytest.raises(MediaError):
        parse_accept(bad)


def test_missing_accept_accepts_anything() -> None:
    assert [r.mime for r in parse_accept(None)] == ["*/*"]
    assert json_type(parse_accept("")) == media.DICOM_JSON


@pytest.mark.parametrize("header, expected", [
    ("application/dicom+json, application/json", media.DICOM_JSON),   # dicomweb-client
    ("application/json", media.JSON),
    ('multipart/related; type="application/dicom+xml", application/dicom+json;q=0.1',
     media.DICOM_JSON),                                                 # composite: never 406
    ("text/html,application/xhtml+xml,*/*;q=0.8", media.DICOM_JSON),  # a browser
    ('multipart/related; type="application/dicom+xml"', None),
])
def test_json_negotiation(header: str, expected: str | None) -> None:
    assert json_type(parse_accept(header)) == expected


def test_content_type_with_quoted_boundary() -> None:
    ct = parse_media_type('multipart/related; type="application/dicom"; boundary="a b"')
    assert ct.params == {"type": "application/dicom", "boundary": "a b"}


# ------------------------------------------------------------------ instances
@pytest.mark.parametrize("header, stored, expected", [
    ('multipart/related; type="application/dicom"; transfer-syntax=*', J2K, J2K),
    ('multipart/related; type="application/dicom"', J2K, EXPLICIT_LE),   # default
    ('multipart/related; type="application/dicom"', JPEG, JPEG),         # lossy: as stored
    ("*/*", RLE, EXPLICIT_LE),
    ((f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}, '
      f'multipart/related; type="application/dicom"; transfer-syntax={RLE}'), RLE, RLE),
    ((f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE};q=0.5, '
      f'multipart/related; type="application/dicom"; transfer-syntax={J2K}'), RLE, J2K),
])
def test_instance_syntax_choice(header: str, stored: str, expected: str) -> None:
    assert choose_syntax(dicom_choices(parse_accept(header)), stored, always) == expected


def test_infeasible_syntaxes_are_skipped_and_none_means_406() -> None:
    choices = dicom_choices(parse_accept(
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEG}, '
        f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE};q=0.2'))
    def only_explicit(_src: str, dst: str) -> bool:
        return dst == EXPLICIT_LE
    assert choose_syntax(choices, J2K, only_explicit) == EXPLICIT_LE
    assert choose_syntax(choices, J2K, lambda _s, _d: False) is None
    assert dicom_choices(parse_accept("image/jpeg")) == []


# --------------------------------------------------------------------- frames
@pytest.mark.parametrize("header, stored, expected", [
    # OHIF / Cornerstone, bare and quoted
    ("multipart/related; type=application/octet-stream; transfer-syntax=*", J2K,
     FrameChoice(OCTET, J2K, False)),
    ('multipart/related; type="application/octet-stream"; transfer-syntax=*', EXPLICIT_LE,
     FrameChoice(OCTET, EXPLICIT_LE, False)),
    # dicomweb-client defaults
    ('multipart/related; type="*/*"', J2K, FrameChoice("image/jp2", J2K, False)),
    ('multipart/related; type="*/*"', "1.2.840.10008.1.2", FrameChoice(OCTET, EXPLICIT_LE, False)),
    ('multipart/related; type="application/octet-stream"', RLE,
     FrameChoice(OCTET, EXPLICIT_LE, True)),
    (f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}', J2K,
     FrameChoice(OCTET, EXPLICIT_LE, True)),
    ('multipart/related; type="image/jp2"', J2K, FrameChoice("image/jp2", J2K, False)),
    ('multipart/related; type="image/x-dicom-rle"', RLE,
     FrameChoice("image/x-dicom-rle", RLE, False)),
    ('multipart/related; type="image/jp2", multipart/related; type="application/octet-stream"',
     RLE, FrameChoice(OCTET, EXPLICIT_LE, True)),
    (None, RLE, FrameChoice("image/dicom-rle", RLE, False)),
])
def test_frame_choice(header: str | None, stored: str, expected: FrameChoice) -> None:
    assert frame_choice(parse_accept(header), stored) == expected


@pytest.mark.parametrize("header", [
    'multipart/related; type="image/jp2"',                       # stored is RLE: no re-encoding
    f'multipart/related; type="application/octet-stream"; transfer-syntax={J2K}',
    "application/dicom+json",
])
def test_frames_we_cannot_produce(header: str) -> None:
    assert frame_choice(parse_accept(header), RLE) is None


# ------------------------------------------------------------------- rendered
@pytest.mark.parametrize("header, param, expected", [
    ("image/jpeg", None, "image/jpeg"),
    ("image/png, image/jpeg;q=0.5", None, "image/png"),
    ("*/*", None, "image/jpeg"),
    ("text/html,image/avif,image/webp,image/apng,*/*;q=0.8", None, "image/jpeg"),
    ("image/jpeg", "image/png", "image/png"),          # ?accept= wins
    ("application/dicom", None, None),
])
def test_rendered_type(header: str, param: str | None, expected: str | None) -> None:
    assert rendered_type(parse_accept(header), param) == expected
