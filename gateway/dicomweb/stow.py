"""STOW-RS (PS3.18 10.5): multipart/related application/dicom bodies → the archive.

The body is parsed as it arrives (chunked or not): each part streams into its own
temporary object of the archive's file store (``Archive.spool``) while the byte count is
checked against MAX_UPLOAD_BYTES. Only when the whole body has been read and found well formed are
the parts handed to the archive, one at a time, so a 400 or 413 stores nothing and
a failed part leaves nothing behind (the archive removes what it rejects). "The whole
body" includes what follows the closing boundary: a body that ends before its
Content-Length (the client went away) stores nothing either (gateway/limits.py raises).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
from flask import Response

from ..archive.protocol import Archive, FailureReason, StoreResult
from ..archive.files import Received as Spooled
from ..archive.files import Spool, out_of_space
from ..config import Settings
from .errors import DicomwebError, header_safe
from .media import DICOM, DICOM_JSON, MULTIPART, MediaError, parse_media_type
from .multipart import MultipartReader

READ_CHUNK = 1 << 20


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    """What one STOW request may hold (MAX_UPLOAD_BYTES, STOW_MAX_PARTS,
    STOW_PART_HEADER_BYTES)."""

    max_bytes: int
    max_parts: int
    part_header_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_upload_bytes, settings.stow_max_parts,
                   settings.stow_part_header_bytes)

    def check_length(self, content_length: int | None) -> None:
        """413 from the header alone, before a byte of the body is read."""
        if content_length is not None and content_length > self.max_bytes:
            raise DicomwebError(413, f"request body of {content_length} bytes exceeds "
                                     f"MAX_UPLOAD_BYTES ({self.max_bytes} bytes); nothing "
                                     "was stored")


@dataclass(frozen=True)
class Received:
    """A part on disk (spooled with its digest), or why it could not even be read as DICOM."""

    file: Spooled | None
    problem: str = ""

    @property
    def path(self) -> Path | None:
        return self.file.path if self.file else None


class CountingReader:
    """``read(n)`` that fails once more than ``limit`` bytes have come in."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge()
        return data


def boundary_of(content_type: str | None) -> str:
    """Check the request type (415 unless multipart/related of application/dicom)."""
    try:
        ctype = parse_media_type(content_type or "")
    except MediaError:
        ctype = None
    if ctype is None or ctype.mime != MULTIPART:
        raise DicomwebError(415, f"STOW-RS needs Content-Type multipart/related; "
                                 f"type=\"application/dicom\", not {content_type or 'none'!r}")
    part_type = ctype.params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise DicomwebError(415, f"parts of type {part_type!r} are not supported; send "
                                 "application/dicom (PS3.10 files)")
    boundary = ctype.params.get("boundary", "")
    if not boundary:
        raise DicomwebError(400, "the multipart/related Content-Type has no boundary")
    return boundary


def receive(stream: IO[bytes], boundary: str, limits: Limits,
            spool: Callable[[], Spool]) -> list[Received]:
    """Spool every part (``spool()`` gives a new temporary object of the archive's store),
    then read the body to its end (a truncated body raises there); nothing is left behind
    if this raises."""
    reader = CountingReader(stream, limits.max_bytes)
    received: list[Received] = []
    writer: Spool | None = None
    try:
        parts = MultipartReader(reader.read, boundary, chunk=READ_CHUNK,
                                max_header_bytes=limits.part_header_bytes).parts()
        for part in parts:
            if len(received) == limits.max_parts:
                raise DicomwebError(413, f"more than STOW_MAX_PARTS ({limits.max_parts}) "
                                         "parts; nothing was stored")
            problem = _part_problem(part.content_type)
            if problem:
                received.append(Received(None, problem))
                continue
            writer = spool()
            for chunk in part.chunks():
                writer.write(chunk)
            received.append(Received(writer.finish()))
            writer = None
        while reader.read(READ_CHUNK):  # the epilogue, up to the end the client announced
            pass
    except TooLarge:
        _discard(received, writer)
        raise DicomwebError(413, f"request body exceeds MAX_UPLOAD_BYTES ({limits.max_bytes} "
                                 "bytes); nothing was stored") from None
    except OSError as exc:
        where = writer.path.parent if writer is not None else "the archive's file store"
        _discard(received, writer)
        if not out_of_space(exc):
            raise
        # RFC 4918 11.5: 507 Insufficient Storage; nothing could be spooled, nothing stored
        raise DicomwebError(507, f"no space left on the disk of {where} ({exc.strerror}); "
                                 "nothing was stored") from None
    except BaseException:
        _discard(received, writer)
        raise
    return received


def _part_problem(content_type: str | None) -> str:
    if content_type is None:
        return ""
    try:
        mime = parse_media_type(content_type).mime
    except MediaError:
        return f"malformed part Content-Type {content_type!r}"
    return "" if mime == DICOM else f"part of type {mime!r} is not application/dicom"


def _discard(received: list[Received], writer: Spool | None) -> None:
    if writer is not None:
        writer.discard()
    for item in received:
        if item.path is not None:
            item.path.unlink(missing_ok=True)


def store_all(archive: Archive, received: list[Received],
              expected_study: str | None) -> list[tuple[StoreResult | None, str]]:
    """Hand the spooled parts to the archive in one batch (it owns the files from then on)."""
    files = [item.file for item in received if item.file is not None]
    try:
        stored = iter(archive.store_batch(files, expected_study=expected_study, move=True))
    except BaseException:
        _discard(received, None)
        raise
    return [(next(stored), "") if item.file is not None else (None, item.problem)
            for item in received]


def response(results: list[tuple[StoreResult | None, str]], root: str,
             expected_study: str | None) -> Response:
    """PS3.18 10.5.3: 200 all stored, 202 some failed, 409 none stored."""
    stored, failed, notes = [], [], []
    studies = set()
    for result, problem in results:
        if result is not None and result.ok:
            studies.add(result.study_uid)
            stored.append(_referenced(result, root))
        else:
            failed.append(_failed(result))
            uid = result.sop_uid if result is not None and result.sop_uid else "part"
            notes.append(f"{uid}: {result.message if result is not None else problem}")
    body: dict[str, dict] = {}
    study = expected_study or (next(iter(studies)) if len(studies) == 1 else None)
    if study and stored:
        body["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{study}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else 202 if stored else 409
    resp = Response(orjson.dumps(body), status=status)
    resp.headers["Content-Type"] = DICOM_JSON  # exactly: dicomweb-client compares the string
    if notes:
        resp.headers["Warning"] = ", ".join(f'299 tcia-gateway "{header_safe(n)}"'
                                            for n in notes[:20])
    return resp


def _referenced(result: StoreResult, root: str) -> dict:
    url = (f"{root}/studies/{result.study_uid}/series/{result.series_uid}"
           f"/instances/{result.sop_uid}")
    return {"00081150": {"vr": "UI", "Value": [result.sop_class_uid]},
            "00081155": {"vr": "UI", "Value": [result.sop_uid]},
            "00081190": {"vr": "UR", "Value": [url]}}


def _failed(result: StoreResult | None) -> dict:
    reason = (result.reason if result is not None and result.reason is not None
              else FailureReason.CANNOT_UNDERSTAND)
    item: dict[str, dict] = {}
    if result is not None and result.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [result.sop_class_uid]}
    if result is not None and result.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [result.sop_uid]}
    item["00081197"] = {"vr": "US", "Value": [int(reason)]}
    return item

