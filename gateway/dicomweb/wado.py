"""WADO-RS instance retrieval and metadata (PS3.18 10.4).

Retrieval streams: one instance at a time, files as stored sent by sendfile under
gunicorn (zerocopy.py) or in 1 MiB reads elsewhere; transcoding (an explicit transfer
syntax other than the stored one) holds one instance in memory at most. Metadata is the
archive's precomputed JSON; the only work per request is making BulkDataURIs absolute,
and warm requests skip even that.
"""
from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path

from flask import Response

from ..archive.errors import NotAcceptable
from ..cache import BoundedCache
from ..archive.protocol import StoredInstance, UidPath
from . import multipart, transcode, zerocopy
from .media import DICOM, SyntaxChoice, choose_syntax, part_type
from .web import etag_of
from .zerocopy import FilePart, FilesResponse

CHUNK = zerocopy.CHUNK


def plan_syntaxes(instances: list[StoredInstance],
                  choices: list[SyntaxChoice]) -> list[tuple[StoredInstance, str]]:
    """The transfer syntax of each part, decided before the first byte is sent: a 406
    must come before the 200 status line, never halfway through a series."""
    plan = []
    for inst in instances:
        target = choose_syntax(choices, inst.transfer_syntax, transcode.feasible)
        if target is None:
            wanted = ", ".join(c.syntax or "default" for c in choices) or "none"
            raise NotAcceptable(
                f"cannot send instance {inst.sop_uid} (stored as {inst.transfer_syntax}) in any "
                f"acceptable transfer syntax ({wanted}); supported targets: "
                f"{', '.join(transcode.targets_for(inst.transfer_syntax))}")
        plan.append((inst, target))
    return plan


def file_chunks(inst: StoredInstance, chunk: int = CHUNK) -> Iterator[bytes]:
    if inst.remote is not None:  # an object store: streamed from it
        return inst.chunks(chunk)
    return zerocopy.file_chunks(FilePart(inst.path, inst.size), chunk)


def _body(inst: StoredInstance, target: str) -> Iterable[bytes]:
    if target == inst.transfer_syntax:
        return file_chunks(inst)
    return transcode.lazy(inst.local(), target)


def _local_file(inst: StoredInstance) -> Path | None:
    """The instance's local file: the stored file, or the object store's hot copy."""
    return inst.remote.cached(inst.key) if inst.remote is not None else inst.path


def _objects_response(parts: list[tuple[str, StoredInstance, str]], boundary: str) -> Response:
    """A retrieve from an object store: objects fetched a few ahead of the one being sent,
    the first before the status line (a store down is a 503), the length known."""
    remote = parts[0][1].remote
    assert remote is not None
    bodies = remote.bodies([(i.key, i.size) for _ct, i, _t in parts], CHUNK)
    first = primed(next(bodies))
    response = Response(multipart.stream(
        ((ct, body) for (ct, _i, _t), body in zip(parts, itertools.chain([first], bodies), strict=True)),
        boundary), direct_passthrough=True)
    response.content_length = multipart.stream_length(((ct, i.size) for ct, i, _t in parts),
                                                      boundary)
    return response


def primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` with its first chunk read now: an object store that is down or hung
    answers 503 before the status line, not a cut 200."""
    first = next(chunks, None)
    return chunks if first is None else itertools.chain([first], chunks)


def retrieve_response(instances: list[StoredInstance], choices: list[SyntaxChoice]) -> Response:
    """multipart/related; type="application/dicom", one part per instance (PS3.18 10.4.1.1.1).

    All as stored: the files themselves, with a Content-Length, sent with sendfile under
    gunicorn (zerocopy.py). Otherwise streamed part by part, transcoding as it goes.
    Every file is checked first: a missing one is a 500 naming it, not a truncated 200."""
    plan = plan_syntaxes(instances, choices)
    zerocopy.check_stored(instances)
    boundary = multipart.new_boundary()
    parts = [(part_type(DICOM, target), inst, target) for inst, target in plan]
    as_stored = bool(parts) and all(t == i.transfer_syntax for _ct, i, t in parts)
    local = [_local_file(i) for _ct, i, _t in parts] if as_stored else []
    if as_stored and all(local):  # files (or an object store's hot copies): sendfile
        response: Response = FilesResponse(multipart.segments(
            ((ct, FilePart(path, i.size)) for (ct, i, _t), path in zip(parts, local, strict=True)
             if path is not None), boundary))
    elif as_stored and all(i.remote is not None for _ct, i, _t in parts):
        response = _objects_response(parts, boundary)
    else:
        response = Response(multipart.stream(((ct, _body(i, t)) for ct, i, t in parts),
                                             boundary), direct_passthrough=True)
    response.headers["Content-Type"] = multipart.content_type(DICOM, boundary)
    return response


def metadata_body(cache: BoundedCache[Hashable, tuple[bytes, bytes, str]], where: UidPath,
                  root: str, doc: bytes) -> tuple[bytes, str]:
    """The absolute-URI body of ``doc`` and its ETag, reused while the archive hands back the
    same document object (its own cache is keyed by series version, so identity = freshness)."""
    key = (where, root)
    hit = cache.get(key)
    if hit is not None and hit[0] is doc:
        return hit[1], hit[2]
    body = absolute_bulk_uris(doc, root)
    etag = etag_of(body)
    if not where.instance:  # single instances are cheap: do not crowd out series
        cache.put(key, (doc, body, etag))
    return body, etag


def absolute_bulk_uris(doc: bytes, root: str) -> bytes:
    """Stored BulkDataURIs are relative to the DICOMweb root: prefix ours, in one pass."""
    if b'"BulkDataURI":"' not in doc:
        return doc
    return doc.replace(b'"BulkDataURI":"', b'"BulkDataURI":"' + root.encode() + b"/")
