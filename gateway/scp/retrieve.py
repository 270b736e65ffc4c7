"""What the SCP needs besides the archive call: unique keys → UID paths, stored
files → datasets the peer accepted, archive errors → DIMSE status datasets."""
from __future__ import annotations

import logging
from typing import Iterable

from pydicom import dcmread
from pydicom.dataset import Dataset

from ..archive.errors import ArchiveError, InvalidQuery, NotFound
from ..archive.protocol import Archive, StoredInstance, UidPath
from ..archive.uids import is_uid
from ..dimse.contexts import UNCOMPRESSED
from ..archive.status import Status

log = logging.getLogger(__name__)
_KEYS = {"STUDY": ("StudyInstanceUID",), "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
         "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


def _uids(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    values = [value] if isinstance(value, str) else list(value)
    out = [str(v).strip() for v in values if str(v).strip()]
    bad = [u for u in out if not is_uid(u)]
    if bad:
        raise InvalidQuery(f"{keyword} {bad[0]!r} is not a valid UID", keyword)
    return out


def retrieve_paths(ds: Dataset) -> list[UidPath]:
    """UID paths named by a C-GET/C-MOVE identifier (PS3.4 C.4.2.2.1, C.4.3.2.1): the
    unique key of the retrieve level may be a list; higher keys narrow it."""
    level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level == "PATIENT":
        raise InvalidQuery("retrieve at the PATIENT level is not supported: name studies",
                           "QueryRetrieveLevel")
    if level not in _KEYS:
        raise InvalidQuery(f"QueryRetrieveLevel {level!r} is not STUDY, SERIES or IMAGE",
                           "QueryRetrieveLevel")
    keys = _KEYS[level]
    leaf = _uids(ds, keys[-1])
    if not leaf:
        raise InvalidQuery(f"{keys[-1]} is required at the {level} level", keys[-1])
    parents: list[str | None] = [next(iter(_uids(ds, k)), None) for k in keys[:-1]]
    if level == "STUDY":
        return [UidPath(uid) for uid in leaf]
    if level == "SERIES":
        return [UidPath(parents[0], uid) for uid in leaf]
    return [UidPath(parents[0], parents[1], uid) for uid in leaf]


def accepted_pairs(contexts: Iterable) -> set[tuple[str, str]]:
    """(SOP Class, transfer syntax) pairs of an association's accepted contexts."""
    return {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in contexts}


def dataset_for(instance: StoredInstance, accepted: set[tuple[str, str]]) -> Dataset:
    """The stored instance as a dataset to C-STORE: as stored when the peer accepted
    its syntax, decompressed when it accepted only uncompressed ones (PS3.5 A.4)."""
    ds = dcmread(instance.local())
    sop, ts = instance.sop_class_uid, instance.transfer_syntax
    if ts in UNCOMPRESSED or (sop, ts) in accepted:
        return ds
    if any((sop, u) in accepted for u in UNCOMPRESSED):
        ds.decompress()
    return ds  # otherwise the sub-operation fails and is counted as such


def failure(exc: Exception) -> Dataset:
    """A status dataset with ErrorComment (PS3.7 C.4): an archive error's own DIMSE status
    (gateway/archive/errors.py); anything else is a bug, logged with its traceback, 0xC000."""
    if isinstance(exc, ArchiveError):
        return status_dataset(exc.answer.dimse, exc.message)
    log.error("DIMSE request failed", exc_info=exc)
    return status_dataset(Status.UNABLE_TO_PROCESS, f"{exc.__class__.__name__}: {exc}")


def status_dataset(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = int(code)
    if comment:
        ds.ErrorComment = comment[:64]  # LO (PS3.5 6.2)
    return ds


def instances_for(archive: Archive, paths: list[UidPath]) -> list[StoredInstance]:
    """Every stored instance under ``paths``; names that match nothing are skipped
    (PS3.4 C.4.3.3.1: zero matches is a success with zero sub-operations)."""
    out: list[StoredInstance] = []
    for path in paths:
        try:
            out += list(archive.instances(path))
        except NotFound:
            continue
    return out
