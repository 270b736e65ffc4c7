"""The errors every Archive backend raises, each with its answer on every face.

The answer is data on the error kind (:class:`Answer`): the HTTP status DICOMweb and FHIR
send, the FHIR issue type of the OperationOutcome (R4 ValueSet issue-type) and the DIMSE
status of the SCP's response (PS3.7 C.4, PS3.4 C.4.1.1.4). Each face reads it in one small
handler, so the three never disagree and never need to know whether the archive is embedded
or a remote PACS. A new kind states its answer here, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .status import Status


@dataclass(frozen=True)
class Answer:
    """How every face answers one kind of error."""

    http: int      # DICOMweb and FHIR status code
    fhir: str      # OperationOutcome.issue.code (R4 issue-type)
    dimse: Status  # the SCP's failure status


class ArchiveError(Exception):
    """Base class; ``message`` is safe to show to a client."""

    answer: ClassVar[Answer] = Answer(500, "exception", Status.UNABLE_TO_PROCESS)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ArchiveError):
    """The study, series, instance, frame or bulk data does not exist."""

    answer = Answer(404, "not-found", Status.UNABLE_TO_PROCESS)


class InvalidQuery(ArchiveError):
    """A search names an unknown attribute or carries a malformed value."""

    answer = Answer(400, "invalid", Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS)

    def __init__(self, message: str, attribute: str | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute


class NotAcceptable(ArchiveError):
    """The requested representation (e.g. a transfer syntax) cannot be produced."""

    answer = Answer(406, "not-supported", Status.UNABLE_TO_PROCESS)


class Unavailable(ArchiveError):
    """The backend (a PACS, the index database) cannot be reached or refuses us."""

    answer = Answer(503, "transient", Status.OUT_OF_RESOURCES)


class UpstreamError(ArchiveError):
    """The PACS answered, but with a failure status."""

    answer = Answer(502, "exception", Status.UNABLE_TO_PROCESS)

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamTimeout(ArchiveError):
    """The PACS did not answer in time."""

    answer = Answer(504, "timeout", Status.UNABLE_TO_PROCESS)


class Forbidden(ArchiveError):
    """The caller may not do this here (a write outside its scope); PS3.7 C.5.3 0x0124.
    Reads never raise it: what a scope does not see answers NotFound (no existence leak)."""

    answer = Answer(403, "forbidden", Status.NOT_AUTHORIZED)


class NotSupported(ArchiveError):
    """The backend cannot honour the request at all (e.g. collections on a DIMSE PACS)."""

    answer = Answer(501, "not-supported", Status.UNABLE_TO_PROCESS)
