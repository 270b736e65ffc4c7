"""DIMSE status codes by name (PS3.7 Annex C; PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).

One definition for every face: the SCP answers with these, archive errors carry one each
(``errors``), and STOW-RS FailureReason values are C-STORE statuses (PS3.18 10.5.3), so
``FailureReason`` is this enum. Handlers return these names instead of bare numbers, and
every message about a peer's answer goes through :func:`describe`, so a log or HTTP error
always says ``0xA801 Refused: Move Destination unknown`` rather than ``43009``.
"""
from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Status values we send or interpret. Ranges (A7xx, A9xx, Cxxx) are handled by
    :func:`category` and :func:`describe`; the members are the values we emit."""

    SUCCESS = 0x0000
    # PS3.7 C.3-C.5: general statuses
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    # PS3.4 C.4.1-C.4.3: Query/Retrieve
    OUT_OF_RESOURCES = 0xA700
    OUT_OF_RESOURCES_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000
    # PS3.4 B.2.3: Storage failures (as STOW-RS FailureReason, PS3.18 10.5.3); aliases
    # name the same code in C-STORE terms
    SOP_CLASS_MISMATCH = 0xA900          # Error: data set does not match SOP Class
    STUDY_MISMATCH = 0xA901              # ours: not the study the STOW request names
    CANNOT_UNDERSTAND = 0xC000           # Error: cannot understand
    SUBOPERATIONS_WARNING = 0xB000  # C-GET/C-MOVE: one or more sub-operations failed
    CANCEL = 0xFE00
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01
    # PS3.4 B.2.3: Storage warnings
    ELEMENTS_DISCARDED = 0xB006
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007


_TEXT: dict[int, str] = {
    0x0000: "Success",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP Instance",
    0x0112: "No such SOP Instance",
    0x0117: "Invalid SOP Instance",
    0x0122: "Refused: SOP Class not supported",
    0x0124: "Refused: not authorised",
    0x0211: "Unrecognised operation",
    0x0212: "Mistyped argument",
    0xA701: "Refused: out of resources, unable to calculate number of matches",
    0xA702: "Refused: out of resources, unable to perform sub-operations",
    0xA801: "Refused: Move Destination unknown",
    0xA901: "Error: StudyInstanceUID does not match the request",
    0xB000: "Warning: sub-operations complete, one or more failures or warnings",
    0xB006: "Warning: elements discarded",
    0xB007: "Warning: data set does not match SOP Class",
    0xFE00: "Cancelled",
    0xFF00: "Pending",
    0xFF01: "Pending: optional keys not supported",
}


def category(code: int) -> str:
    """``success``, ``pending``, ``cancel``, ``warning`` or ``failure`` (PS3.7 C.1)."""
    if code == 0x0000:
        return "success"
    if code in (0xFF00, 0xFF01):
        return "pending"
    if code == 0xFE00:
        return "cancel"
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return "warning"
    return "failure"


def describe(code: int | None) -> str:
    """``0xA801 Refused: Move Destination unknown`` (or the range it falls in)."""
    if code is None:
        return "no status (association aborted or timed out)"
    text = _TEXT.get(code)
    if text is None:
        if 0xA700 <= code <= 0xA7FF:
            text = "Refused: out of resources"
        elif 0xA900 <= code <= 0xA9FF:
            text = "Error: identifier/data set does not match SOP Class"
        elif 0xC000 <= code <= 0xCFFF:
            text = "Error: unable to process"
        else:
            text = category(code).capitalize()
    return f"0x{code:04X} {text}"
