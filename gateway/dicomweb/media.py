"""Media types and content negotiation for DICOMweb (PS3.18 8.7). Pure: no Flask.

Clients differ in how they spell the same request: OHIF omits the quotes around
``type=`` and ``transfer-syntax=``, dicomweb-client quotes ``type``, browsers add
``*/*;q=0.8``. Everything here treats quoted and bare parameter values alike
(RFC 7231 3.1.1.1) and orders alternatives by ``q`` (stable for equal ``q``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED = frozenset({EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})
ANY_SYNTAX = "*"

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
JSON = "application/json"
OCTET = "application/octet-stream"
MULTIPART = "multipart/related"

# Bulk data media type of each encapsulated transfer syntax (PS3.18 Table 8.7.3-5).
SYNTAX_MEDIA: dict[str, str] = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.100": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
}
# Lossy syntaxes: when the archive only has these, "no transfer-syntax" means "as stored"
# (PS3.18 8.7.3: the default does not apply to lossy-only pixel data).
LOSSY = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
                   "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203",
                   *(f"1.2.840.10008.1.2.4.{n}" for n in range(100, 107))})
RENDERED_TYPES = ("image/jpeg", "image/png", "image/gif")


class MediaError(ValueError):
    """A header that cannot be parsed (400), as opposed to one we cannot satisfy (406)."""


@dataclass(frozen=True)
class MediaRange:
    """One alternative of an Accept header, or a Content-Type."""

    mime: str                       # lower case, e.g. "multipart/related", "*/*"
    params: dict[str, str] = field(default_factory=dict)  # names lower case, values unquoted
    q: float = 1.0

    @property
    def inner(self) -> str:
        """The payload type: ``type=`` of a multipart range, else the range itself."""
        if self.mime == MULTIPART:
            return self.params.get("type", "").lower()
        return self.mime

    @property
    def multipart(self) -> bool:
        return self.mime == MULTIPART

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    def matches(self, mime: str) -> bool:
        """Does this range (with ``*`` wildcards) cover the concrete type ``mime``?"""
        return type_matches(self.mime, mime)


def type_matches(pattern: str, mime: str) -> bool:
    if pattern in ("*/*", "*", ""):
        return True
    major, _, minor = pattern.partition("/")
    if minor == "*":
        return mime.split("/", 1)[0] == major
    return pattern == mime


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_media_type(text: str) -> MediaRange:
    """``type/subtype; name=value; ...`` (RFC 7231 3.1.1.1), values quoted or bare."""
    pieces = _split(text, ";")
    mime = pieces[0].strip().lower()
    if "/" not in mime and mime != "*":
        raise MediaError(f"not a media type: {text.strip()!r}")
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        if not piece.strip():
            continue
        name, eq, value = piece.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            raise MediaError(f"malformed media type parameter {piece.strip()!r} "
                             f"in {text.strip()!r}")
        if name == "q":
            try:
                q = float(_unquote(value))
            except ValueError:
                raise MediaError(f"malformed q value in {text.strip()!r}") from None
            if not 0.0 <= q <= 1.0:
                raise MediaError(f"q value out of range in {text.strip()!r}")
            continue
        params[name] = _unquote(value)
    return MediaRange("*/*" if mime == "*" else mime, params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Accept alternatives, best first (``q`` descending, header order for ties).

    A missing or empty header accepts anything (RFC 7231 5.3.2). Ranges with ``q=0``
    are refusals and dropped.
    """
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(p) for p in _split(header, ",") if p.strip()]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)  # sorted() is stable


def accepts(ranges: Iterable[MediaRange], mime: str) -> bool:
    return any(r.matches(mime) for r in ranges)


def json_type(ranges: list[MediaRange]) -> str | None:
    """The JSON flavour to answer with: dicom+json unless only application/json is wanted.

    A composite Accept that includes dicom+json anywhere gets dicom+json (docs/dicomweb.md, QIDO-RS).
    """
    if any(r.mime == DICOM_JSON for r in ranges):
        return DICOM_JSON
    for r in ranges:
        if r.matches(DICOM_JSON):
            return DICOM_JSON
        if r.mime == JSON:
            return JSON
    return None


# --------------------------------------------------------------------- instances
@dataclass(frozen=True)
class SyntaxChoice:
    """One acceptable representation: a transfer syntax UID, ``*`` (as stored) or
    None (the default for the resource, PS3.18 8.7.3.5.2)."""

    syntax: str | None
    q: float


def dicom_choices(ranges: list[MediaRange]) -> list[SyntaxChoice]:
    """Acceptable transfer syntaxes for ``application/dicom`` retrieval, best first."""
    out = []
    for r in ranges:
        wanted = r.inner in ("", "*/*", "application/*", DICOM) if r.multipart else \
            r.mime in (DICOM, "*/*", "application/*", "multipart/*")
        if wanted:
            out.append(SyntaxChoice(r.transfer_syntax, r.q))
    return out


def default_syntax(stored: str) -> str:
    """PS3.18 8.7.3: Explicit VR Little Endian, unless only lossy pixel data exists."""
    return stored if stored in LOSSY else EXPLICIT_LE


def choose_syntax(choices: list[SyntaxChoice], stored: str,
                  feasible: Callable[[str, str], bool]) -> str | None:
    """The syntax to send an instance stored as ``stored`` in, or None (406).

    Among alternatives of equal ``q``, one that needs no transcoding wins.
    """
    best: tuple[float, int, int, str] | None = None
    for i, c in enumerate(choices):
        target = stored if c.syntax == ANY_SYNTAX else (c.syntax or default_syntax(stored))
        if not feasible(stored, target):
            continue
        key = (c.q, 1 if target == stored else 0, -i, target)
        if best is None or key[:3] > best[:3]:
            best = key
    return best[3] if best else None


# ------------------------------------------------------------------------ frames
@dataclass(frozen=True)
class FrameChoice:
    """How to answer a frame or bulk data request: part media type and syntax."""

    media: str      # the part's media type
    syntax: str     # the transfer syntax of the bytes sent
    decode: bool    # True: decode stored pixels to native little endian


def stored_frame_syntax(stored: str) -> str:
    """Native stored pixels travel as Explicit VR Little Endian bytes (PS3.18 8.7.3.3.2)."""
    return EXPLICIT_LE if stored in UNCOMPRESSED else stored


def natural_media(syntax: str) -> str:
    return SYNTAX_MEDIA.get(syntax, OCTET)


def frame_choice(ranges: list[MediaRange], stored: str) -> FrameChoice | None:
    """Pick the representation of frames stored as ``stored``: the stored bytes, or the
    pixels decoded to native little endian. Frames are never re-encoded (406 instead)."""
    native = stored_frame_syntax(stored)
    for r in ranges:
        inner = (r.inner or OCTET) if r.multipart else r.mime
        found = (_wildcard_frame(inner, r.transfer_syntax, native) if "*" in inner
                 else _concrete_frame(inner, r.transfer_syntax, native))
        if found:
            return found
    return None


def _same_media(a: str, b: str) -> bool:
    return a.replace("/x-", "/") == b.replace("/x-", "/")


def _wildcard_frame(inner: str, ts: str | None, native: str) -> FrameChoice | None:
    media = natural_media(native)
    if ts in (None, ANY_SYNTAX, native) and type_matches(inner, media):
        return FrameChoice(media, native, False)
    if type_matches(inner, OCTET):
        if ts == ANY_SYNTAX:
            return FrameChoice(OCTET, native, False)
        if ts in (None, EXPLICIT_LE):
            return FrameChoice(OCTET, EXPLICIT_LE, native != EXPLICIT_LE)
    return None


def _concrete_frame(inner: str, ts: str | None, native: str) -> FrameChoice | None:
    if inner == OCTET:
        if ts in (ANY_SYNTAX, native) and ts is not None:
            return FrameChoice(OCTET, native, False)  # Cornerstone: "octet-stream; ts=*"
        if ts in (None, EXPLICIT_LE):
            return FrameChoice(OCTET, EXPLICIT_LE, native != EXPLICIT_LE)
        return None
    if not _same_media(inner, natural_media(native)):
        return None
    if ts in (None, ANY_SYNTAX, native):
        return FrameChoice(inner, native, False)
    return None


def part_type(media: str, syntax: str) -> str:
    """Part Content-Type with the transfer-syntax parameter (PS3.18 8.7.3.5.1)."""
    return f"{media}; transfer-syntax={syntax}"


# ---------------------------------------------------------------------- rendered
def rendered_type(ranges: list[MediaRange], accept_param: str | None = None) -> str | None:
    """image/jpeg, image/png or image/gif for rendered resources (PS3.18 8.7.4).

    The ``accept`` query parameter (PS3.18 8.3.3.1) overrides the header."""
    if accept_param:
        ranges = parse_accept(accept_param)
    for r in ranges:
        inner = r.inner if r.multipart else r.mime
        for candidate in RENDERED_TYPES:
            if type_matches(inner, candidate):
                return candidate
    return None
