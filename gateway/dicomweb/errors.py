"""One error handler for the DICOMweb family: archive errors and HTTP errors → status +
a JSON body with a reason a person can act on (PS3.18 8.6.3 leaves the payload open).

The same routes front the embedded archive and a remote PACS, so the status is the error
kind's own (``ArchiveError.answer``, gateway/archive/errors.py): NotFound 404, InvalidQuery
400, NotAcceptable 406, Unavailable 503, UpstreamError 502, UpstreamTimeout 504.
"""
from __future__ import annotations

import logging

import orjson
from flask import Blueprint, Response
from werkzeug.exceptions import HTTPException

from ..archive.errors import ArchiveError, InvalidQuery, UpstreamError
from .media import MediaError
from .multipart import MultipartError

log = logging.getLogger(__name__)

REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 406: "Not Acceptable",
           409: "Conflict", 501: "Not Implemented",
           413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
           507: "Insufficient Storage"}


class DicomwebError(Exception):
    """An HTTP error raised by the DICOMweb layer itself (e.g. 415 on STOW)."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_response(status: int, message: str, **extra: object) -> Response:
    body = {"status": status, "error": REASONS.get(status, "Error"), "message": message, **extra}
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    # PS3.18 8.6.3: a Warning header may carry the reason for clients that drop bodies.
    response.headers["Warning"] = f'299 tcia-gateway "{header_safe(message)}"'
    return response


def header_safe(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c != '"' else "'" if c == '"' else " "
                   for c in text)[:300]


def register_handlers(bp: Blueprint) -> None:
    """Install the family's handler on a blueprint (DICOMweb and WADO-URI)."""

    @bp.errorhandler(ArchiveError)
    def _archive(exc: ArchiveError) -> Response:
        status = exc.answer.http
        extra: dict[str, object] = {}
        if isinstance(exc, InvalidQuery) and exc.attribute:
            extra["attribute"] = exc.attribute
        if isinstance(exc, UpstreamError) and exc.status is not None:
            extra["dimseStatus"] = f"0x{exc.status:04X}"
        if status >= 500:
            log.warning("archive error %s: %s", status, exc.message)
        return error_response(status, exc.message, **extra)

    @bp.errorhandler(DicomwebError)
    def _own(exc: DicomwebError) -> Response:
        return error_response(exc.status, exc.message, **exc.extra)

    @bp.errorhandler(MediaError)
    def _media(exc: MediaError) -> Response:
        return error_response(400, f"malformed media type: {exc}")

    @bp.errorhandler(MultipartError)
    def _multipart(exc: MultipartError) -> Response:
        return error_response(400, f"malformed multipart body: {exc}")

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or exc.name)
