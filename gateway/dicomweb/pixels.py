"""Frame bytes and decoded pixels of a stored instance.

The fast path is the archive's frame table: one positioned read per fragment; native
grey frames are decoded from it without parsing the file (native.py). Files whose frames
cannot be cut by offset (deflate, big endian, 1-bit, odd encapsulations), compressed
frames, colour and LUT-bearing images fall back to pydicom, which decodes exactly one
frame (``pixel_array(path, index=...)``).
"""
from __future__ import annotations

import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import pack_bits, pixel_array

from ..archive.errors import NotAcceptable
from ..archive.protocol import Archive, StoredInstance
from . import native
from .media import DEFLATED_LE, UNCOMPRESSED
from .zerocopy import StoredFileError

# Elements rendering needs beyond the Image Pixel module (PS3.3 C.11.1, C.11.2).
RENDER_TAGS = [0x00281050, 0x00281051, 0x00281052, 0x00281053, 0x00281054, 0x00281056,
               0x00283000, 0x00283010, 0x00080060]


def stored_frame(inst: StoredInstance, number: int) -> bytes:
    """Frame ``number`` (from 1) as stored: compressed bitstream or native LE pixels.
    Exactly the frame table's bytes or OSError: a short part must not look complete."""
    if inst.frames is not None:
        data = inst.read_frame(number)
        wanted = sum(f.length for f in inst.frames[number - 1])
        if len(data) != wanted:
            raise OSError(f"{inst.path}: frame {number} ended after {len(data)} of {wanted} bytes")
        return data
    if inst.transfer_syntax in UNCOMPRESSED:
        return native_frame(inst, number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(inst.local())
        return get_frame(ds.PixelData, number - 1, number_of_frames=inst.number_of_frames)


def decode(inst: StoredInstance, number: int, archive: Archive | None = None,
           layouts: native.Layouts | None = None) -> tuple[np.ndarray, Dataset]:
    """One frame decoded (YBR → RGB) and the header elements that describe it.

    With ``archive``, native grey frames skip pydicom (native.py; ``layouts`` kept)."""
    if archive is not None:
        try:
            fast = native.grey_frame(inst, number, archive, layouts)
        except FileNotFoundError as exc:
            raise StoredFileError(inst.sop_uid, "is missing") from exc
        if fast is not None:
            return fast
    return _pydicom_decode(inst, number)


def _pydicom_decode(inst: StoredInstance, number: int) -> tuple[np.ndarray, Dataset]:
    header = Dataset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if inst.transfer_syntax == DEFLATED_LE:  # path-based decoding cannot inflate
                header = pydicom.dcmread(inst.local())
                array = pixel_array(header, index=number - 1)
            else:
                array = pixel_array(str(inst.local()), index=number - 1, ds_out=header,
                                    specific_tags=RENDER_TAGS)
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise NotAcceptable(f"cannot decode pixel data of {inst.sop_uid} "
                            f"({inst.transfer_syntax}): {exc}") from exc
    except FileNotFoundError as exc:
        raise StoredFileError(inst.sop_uid, "is missing") from exc
    return array, header


def native_frame(inst: StoredInstance, number: int) -> bytes:
    """Frame pixels as Explicit VR Little Endian bulk data (PS3.5 8.1.1, 8.2)."""
    array, header = decode(inst, number)
    if int(header.get("BitsAllocated", 8)) == 1:
        return pack_bits(array.astype(np.uint8), pad=False)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
