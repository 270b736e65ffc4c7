"""Rendering's fast path (frames cut by offset, described by the stored metadata, grey
tables shared between images) gives exactly what the pydicom path gives: same arrays,
same display levels as a freshly built table, same encoded bytes. Compressed and
LUT-bearing images keep going through pydicom."""
from __future__ import annotations

import dataclasses

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from gateway.archive.local import open_local
from gateway.cache import BoundedCache
from gateway.archive.protocol import Archive, Level, Query, StoredInstance, UidPath
from gateway.config import Settings
from gateway.dicomweb import native, pixels, render, rendered
from gateway.dicomweb.render import RenderParams
from gateway.dicomweb.zerocopy import StoredFileError
from tests.support.dicomfiles import make_file

J2K, RLE = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"
PARAMS = [RenderParams("image/png"),
          RenderParams("image/png", window=(40.0, 400.0, "linear")),
          RenderParams("image/png", window=(1500.0, 800.0, "sigmoid")),
          RenderParams("image/jpeg", viewport=(100, 60)),
          RenderParams("image/jpeg", window=(-600.0, 1500.0, "linear-exact"),
                       viewport=(64, 64, 8, 8, 100, 120))]


def _rewrite(path: Path, change) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


def _garbage_high_bits(ds: Dataset) -> None:
    """12 of 16 bits, the 4 unused ones set: pydicom masks them (PS3.5 8.1.1)."""
    ds.BitsStored, ds.HighBit = 12, 11
    values = (np.arange(32 * 32, dtype=np.uint16) * 5 % 4096) | 0xF000
    ds.PixelData = values.tobytes()
    ds.WindowCenter, ds.WindowWidth = 2000, 3000


def _signed12(ds: Dataset) -> None:
    """Signed 12-bit values with the unused bits clear: pydicom sign-extends them."""
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
    values = (np.arange(32 * 32, dtype=np.int16) * 3 - 1500).astype(np.int16) & 0x0FFF
    ds.PixelData = values.astype(np.uint16).tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100


def _eight_bit_mono1(ds: Dataset) -> None:
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PhotometricInterpretation = "MONOCHROME1"
    frames = [np.full((16, 16), 10 * (k + 1), np.uint8) + np.arange(16, dtype=np.uint8)
              for k in range(3)]
    ds.PixelData = np.stack(frames).tobytes()


def _voi_lut(ds: Dataset) -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 8])  # LUT Descriptor
    item.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data
    ds.VOILUTSequence = [item]


def _implicit(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = [-600, 40], [1500, 400]


def _extras(src: Path) -> dict[str, Path]:
    def made(name: str, **kw) -> Path:
        return make_file(src / f"{name}.dcm", patient="FAST-X", study="fx", series=name,
                         sop=name, modality="OT", **kw)
    return {"garbage-high-bits": _rewrite(made("hb", size=32), _garbage_high_bits),
            "signed-12": _rewrite(made("s12", size=32), _signed12),
            "8-bit-mono1": _rewrite(made("u8", size=16, frames=3), _eight_bit_mono1),
            "voi-lut": _rewrite(made("voi", size=16), _voi_lut),
            "implicit-vr": _rewrite(made("ivr", size=16), _implicit)}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, loaded_data_dir: Path) -> Archive:
    root = tmp_path_factory.mktemp("fast")
    shutil.copytree(loaded_data_dir, root / "data")
    arch = open_local(Settings().replace(data_dir=root / "data"))
    for path in _extras(root / "src").values():
        assert arch.store(path).ok
    return arch


@pytest.fixture(scope="module")
def cases(archive: Archive) -> dict[str, tuple[StoredInstance, int]]:
    """One instance of each kind, with the frame to render."""
    found: dict[str, tuple[StoredInstance, int]] = {}
    for s in archive.search(Query(Level.SERIES)).matches:
        where = UidPath(s["0020000D"]["Value"][0], s["0020000E"]["Value"][0])
        for inst in archive.instances(where):
            name = _kind(inst)
            found.setdefault(name, (inst, 2 if inst.number_of_frames > 1 else 1))
    return found


def _kind(inst: StoredInstance) -> str:
    header = pydicom.dcmread(inst.local(), stop_before_pixels=True)
    if header.Modality == "OT":
        return _ot_kind(header)
    if inst.transfer_syntax == RLE:
        return "DX RLE"
    if inst.transfer_syntax == J2K:
        return "CR JPEG 2000"
    return f"{header.Modality} {header.PhotometricInterpretation}"


def _ot_kind(header: Dataset) -> str:
    if "VOILUTSequence" in header:
        return "voi-lut"
    if header.BitsAllocated == 8:
        return "8-bit-mono1"
    if header.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian:
        return "implicit-vr"
    return "signed-12" if header.PixelRepresentation else "garbage-high-bits"


FAST = ["CT MONOCHROME2", "DX MONOCHROME2", "CR MONOCHROME1", "garbage-high-bits",
        "signed-12", "8-bit-mono1", "implicit-vr"]
SLOW = ["DX RLE", "CR JPEG 2000", "voi-lut"]


def reference_levels(array: np.ndarray, header: Dataset,
                     window: tuple[float, float, str] | None) -> np.ndarray:
    """Display levels as before the shared tables: a fresh table, fancy indexing."""
    if array.dtype.kind in "ui" and array.dtype.itemsize <= 2:
        unsigned = np.dtype(f"u{array.dtype.itemsize}")
        domain = np.arange(1 << (8 * array.dtype.itemsize), dtype=unsigned).view(array.dtype)
        return render._display(domain, header, window, array)[array.view(unsigned)]
    return render._display(array, header, window, None)


@pytest.mark.parametrize("kind", FAST + SLOW)
def test_fast_decode_is_pydicoms_array(archive, cases, kind) -> None:
    inst, frame = cases[kind]
    fast = native.grey_frame(inst, frame, archive)
    assert (fast is not None) == (kind in FAST)
    array, _header = pixels.decode(inst, frame, archive)
    expected, _ = pixels.decode(inst, frame)  # pydicom, from the file
    assert array.dtype == expected.dtype and array.shape == expected.shape
    assert np.array_equal(array, expected)


@pytest.mark.parametrize("kind", FAST + SLOW)
@pytest.mark.parametrize("params", PARAMS, ids=["png", "png-window", "png-sigmoid",
                                                 "jpeg-viewport", "jpeg-exact-crop"])
def test_rendered_bytes_equal_the_pydicom_path(archive, cases, kind, params) -> None:
    inst, frame = cases[kind]
    fast = rendered.image_bytes(archive, inst, frame, params)
    assert fast == rendered.image_bytes(None, inst, frame, params)
    array, header = pixels.decode(inst, frame)
    levels = reference_levels(array, header, params.window)
    if params.media == "image/png" and not params.viewport:  # lossless: compare pixels
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(fast))), levels)
    image = render._apply_viewport(Image.fromarray(levels, "L"), params.viewport)
    assert fast == render.encode(image, params)


def test_shared_tables_follow_every_input(archive, cases) -> None:
    """Windows, frames of different ranges and photometrics never get another's table."""
    order = [("CT MONOCHROME2", 0), ("CT MONOCHROME2", 1), ("8-bit-mono1", 0),
             ("CT MONOCHROME2", 0), ("DX MONOCHROME2", 1), ("CR MONOCHROME1", 1)]
    inst, _ = cases["8-bit-mono1"]
    for frame in (1, 2, 3, 1):  # no window: each frame's own range
        array, header = pixels.decode(inst, frame, archive)
        assert np.array_equal(render.grey_levels(array, header, None),
                              reference_levels(array, header, None))
    for kind, p in order:
        inst, frame = cases[kind]
        array, header = pixels.decode(inst, frame, archive)
        window = PARAMS[p].window
        assert np.array_equal(render.grey_levels(array, header, window),
                              reference_levels(array, header, window))


class CountingArchive:
    """The archive, counting the metadata documents rendering asks for."""

    def __init__(self, archive: Archive) -> None:
        self.archive, self.asked = archive, 0

    def metadata(self, where: UidPath) -> bytes:
        self.asked += 1
        return self.archive.metadata(where)


def test_the_frames_of_one_file_ask_for_its_metadata_once(archive, cases) -> None:
    inst, _ = cases["8-bit-mono1"]
    counting = CountingArchive(archive)
    layouts: BoundedCache = BoundedCache(64)  # as a fresh worker's
    frames = [pixels.decode(inst, n, counting, layouts)[0] for n in (1, 2, 3, 2)]
    assert counting.asked == 1 and frames[1].tolist() == frames[3].tolist()
    moved = dataclasses.replace(inst, path=inst.path.with_name("other.dcm"))
    assert native.instance_layout(moved, counting, layouts) is not None and counting.asked == 2


def test_a_missing_file_is_a_server_error_naming_the_instance(archive, cases) -> None:
    inst, _ = cases["CT MONOCHROME2"]
    gone = dataclasses.replace(inst, path=inst.path.with_name("gone.dcm"),
                               key=inst.key and "gone/key")  # an object store's key too
    with pytest.raises(StoredFileError) as err:
        rendered.image_bytes(archive, gone, 1, PARAMS[0])
    assert err.value.status == 500 and err.value.extra == {"instance": inst.sop_uid}
