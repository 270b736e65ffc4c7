"""The errors every Archive backend raises.

The DICOMweb, DIMSE and FHIR layers translate these into their own protocol's
form (HTTP status + reason, DIMSE status, OperationOutcome), so they never need
to know whether the archive is embedded or a remote PACS.
"""
from __future__ import annotations


class ArchiveError(Exception):
    """Base class; ``message`` is safe to show to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ArchiveError):
    """The study, series, instance, frame or bulk data does not exist."""


class InvalidQuery(ArchiveError):
    """A search names an unknown attribute or carries a malformed value."""

    def __init__(self, message: str, attribute: str | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute


class NotAcceptable(ArchiveError):
    """The requested representation (e.g. a transfer syntax) cannot be produced."""


class Unavailable(ArchiveError):
    """The backend (a PACS, the index database) cannot be reached or refuses us."""


class UpstreamError(ArchiveError):
    """The PACS answered, but with a failure status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamTimeout(ArchiveError):
    """The PACS did not answer in time."""
