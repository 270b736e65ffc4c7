"""Transfer syntax conversion of whole instances for WADO-RS / WADO-URI.

pydicom does the work: decoders from pydicom (RLE), pylibjpeg / GDCM (JPEG family,
JPEG 2000) and encoders for RLE Lossless and JPEG 2000 Lossless (pylibjpeg-openjpeg).
Anything else is answered 406 before streaming starts. Implicit VR Little Endian and
Big Endian are never produced (PS3.18 8.7.3: not used with Web Services); lossy
targets are refused rather than silently degrading an image.
"""
from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pydicom
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import UID

from .media import EXPLICIT_LE, UNCOMPRESSED

log = logging.getLogger(__name__)

ENCODABLE = ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90")  # RLE, JPEG 2000 lossless


@lru_cache(maxsize=64)
def decodable(syntax: str) -> bool:
    if syntax in UNCOMPRESSED:
        return True
    try:
        return get_decoder(UID(syntax)).is_available
    except (NotImplementedError, ValueError):
        return False


@lru_cache(maxsize=16)
def _encodable(syntax: str) -> bool:
    try:
        return syntax in ENCODABLE and get_encoder(UID(syntax)).is_available
    except (NotImplementedError, ValueError):
        return False


def feasible(stored: str, target: str) -> bool:
    """Can an instance stored as ``stored`` be sent as ``target``?"""
    if target == stored:
        return True
    if target == EXPLICIT_LE:
        return decodable(stored)
    return _encodable(target) and decodable(stored)


def targets_for(stored: str) -> list[str]:
    return [t for t in dict.fromkeys((stored, EXPLICIT_LE, *ENCODABLE)) if feasible(stored, t)]


def transcode(path: Path, target: str) -> bytes:
    """The instance re-encoded in ``target``; SOPInstanceUID unchanged (lossless only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(path))
        stored = str(ds.file_meta.TransferSyntaxUID)
        has_pixels = "PixelData" in ds
        if has_pixels and stored not in UNCOMPRESSED:
            ds.decompress(generate_instance_uid=False)
        if has_pixels and target not in UNCOMPRESSED:
            ds.compress(target, generate_instance_uid=False)
        ds.file_meta.TransferSyntaxUID = UID(target)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def lazy(path: Path, target: str) -> Iterator[bytes]:
    """Transcode when the stream reaches this part: one instance in memory at a time."""
    try:
        yield transcode(path, target)
    except Exception:
        # The status line has gone out; all we can do is cut the stream so the client
        # sees a truncated multipart body rather than a silently missing instance.
        log.exception("transcoding %s to %s failed mid-stream", path.name, target)
        raise
