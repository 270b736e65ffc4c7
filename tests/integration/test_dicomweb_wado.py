"""WADO-RS and WADO-URI over HTTP (PS3.18 10.4, 9): multipart exactly as Cornerstone and
dicomweb-client read it, byte-identical retrieval, frames of single- and multi-frame
images in stored and decoded form, metadata with absolute BulkDataURIs, bulk data,
rendered images and thumbnails, errors, and the OpenAPI description."""
from __future__ import annotations

import gzip
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from gateway.archive.local import open_local
from gateway.config import Settings
from gateway.dicomweb.media import parse_media_type
from gateway.dicomweb.multipart import MultipartReader
from tests.support.dicomfiles import make_file
from tests.support.procs import GatewayServer, start_gateway

EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.90"
ALL_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@dataclass(frozen=True)
class Obj:
    path: Path
    study: str
    series: str
    sop: str
    ts: str
    frames: int
    modality: str
    photometric: str

    @property
    def url(self) -> str:
        return f"/dicomweb/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def _extras(src: Path) -> list[Path]:
    """Objects the cohort lacks: multi-frame native and RLE, deflated, an overlay."""
    multi = make_file(src / "multi.dcm", patient="WADO-X", study="wx", series="multi",
                      sop="multi-1", size=16, frames=3, modality="OT")
    ds = pydicom.dcmread(make_file(src / "rle.dcm", patient="WADO-X", study="wx", series="rle",
                                   sop="rle-1", size=16, frames=3, modality="OT"))
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(src / "rle.dcm", enforce_file_format=True)
    ds = pydicom.dcmread(make_file(src / "defl.dcm", patient="WADO-X", study="wx",
                                   series="defl", sop="defl-1", size=16, modality="OT"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(src / "defl.dcm", enforce_file_format=True)
    ds = pydicom.dcmread(make_file(src / "ovl.dcm", patient="WADO-X", study="wx", series="ovl",
                                   sop="ovl-1", size=64, modality="OT"))
    ds.add_new(0x60000010, "US", 256)
    ds.add_new(0x60000011, "US", 256)
    ds.add_new(0x60003000, "OW", bytes(range(256)) * 32)  # > 1 KiB: becomes a BulkDataURI
    ds.save_as(src / "ovl.dcm", enforce_file_format=True)
    return [multi, src / "rle.dcm", src / "defl.dcm", src / "ovl.dcm"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    root = tmp_path_factory.mktemp("wado")
    data = root / "data"
    shutil.copytree(loaded_data_dir, data)
    archive = open_local(Settings().replace(data_dir=data))
    for path in _extras(root / "src"):
        assert archive.store(path).ok
    srv = start_gateway(data, artifacts_dir / "logs")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def objs(small_cohort, server) -> list[Obj]:
    out = []
    for path in sorted(Path(small_cohort.root).rglob("*.dcm")) + sorted(
            (server.data_dir.parent / "src").glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append(Obj(path, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                       str(ds.file_meta.TransferSyntaxUID), int(ds.get("NumberOfFrames", 1)),
                       ds.Modality, ds.PhotometricInterpretation))
    return out


def named(objs: list[Obj], name: str) -> Obj:
    return next(o for o in objs if o.path.name == name)


def one(objs: list[Obj], **kw) -> Obj:
    return next(o for o in objs if all(getattr(o, k) == v for k, v in kw.items()))


def get(server: GatewayServer, path: str, accept: str | None = None, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    if accept:
        headers["Accept"] = accept
    return requests.get(server.url + path, headers=headers, timeout=60, **kw)


def parts(r: requests.Response) -> list[tuple[dict, bytes]]:
    boundary = parse_media_type(r.headers["Content-Type"]).params["boundary"]
    src = io.BytesIO(r.content)
    return [(p.headers, b"".join(p.chunks())) for p in MultipartReader(src.read, boundary).parts()]


# ------------------------------------------------------------------ retrieve
@pytest.mark.parametrize("accept", [ALL_AS_STORED,
                                    "multipart/related; type=application/dicom; transfer-syntax=*"])
def test_series_retrieve_is_the_stored_files_in_order(server, objs, accept) -> None:
    ct = sorted((o for o in objs if o.modality == "CT"),
                key=lambda o: pydicom.dcmread(o.path, stop_before_pixels=True).InstanceNumber)
    r = get(server, f"/dicomweb/studies/{ct[0].study}/series/{ct[0].series}", accept,
            headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "Content-Encoding" not in r.headers
    ctype = r.headers["Content-Type"]
    assert ctype.startswith('multipart/related; type="application/dicom"; boundary=')
    boundary = parse_media_type(ctype).params["boundary"]
    assert r.content.startswith(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom")
    assert int(r.headers["Content-Length"]) == len(r.content)
    got = parts(r)
    assert [b for _h, b in got] == [o.path.read_bytes() for o in ct]
    assert all(h["content-type"] == f"application/dicom; transfer-syntax={o.ts}"
               for (h, _b), o in zip(got, ct))


def test_retrieve_default_syntax_decodes_compressed(server, objs) -> None:
    j2k = one(objs, ts=J2K)
    r = get(server, j2k.url, 'multipart/related; type="application/dicom"')
    [(headers, body)] = parts(r)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
    ds = pydicom.dcmread(io.BytesIO(body))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(ds.pixel_array, pixel_array(str(j2k.path)))


def test_retrieve_errors(server, objs) -> None:
    r = get(server, "/dicomweb/studies/1.2.3.999", ALL_AS_STORED)
    assert r.status_code == 404 and "1.2.3.999" in r.json()["message"]
    o = objs[0]
    r = get(server, o.url, "image/jpeg")
    assert r.status_code == 406
    r = get(server, f"/dicomweb/studies/{o.study}/series/1.2.3/metadata")
    assert r.status_code == 404


# -------------------------------------------------------------------- frames
def test_ohif_frame_request_bytes(server, objs) -> None:
    ct = one(objs, modality="CT")
    r = get(server, ct.url + "/frames/1", OHIF_FRAMES, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "Content-Encoding" not in r.headers
    ctype = r.headers["Content-Type"]
    assert ctype.startswith('multipart/related; type="application/octet-stream"; boundary=')
    b = parse_media_type(ctype).params["boundary"].encode()
    head = b"--" + b + b"\r\nContent-Type: application/octet-stream; transfer-syntax=" + \
        ct.ts.encode() + b"\r\n\r\n"
    pixels = pydicom.dcmread(ct.path).PixelData
    assert r.content == head + pixels + b"\r\n--" + b + b"--\r\n"


def test_compressed_frames_as_stored_or_decoded(server, objs) -> None:
    j2k = one(objs, ts=J2K)
    [(h, body)] = parts(get(server, j2k.url + "/frames/1", OHIF_FRAMES))
    assert h["content-type"] == f"application/octet-stream; transfer-syntax={J2K}"
    stored = pydicom.encaps.get_frame(pydicom.dcmread(j2k.path).PixelData, 0, number_of_frames=1)
    assert body == stored
    [(h, body)] = parts(get(server, j2k.url + "/frames/1",
                            'multipart/related; type="application/octet-stream"'))
    assert h["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    assert body == pixel_array(str(j2k.path)).astype("<u2").tobytes()


def test_multi_frame_order_and_range(server, objs) -> None:
    multi = named(objs, "multi.dcm")
    frames = pixel_array(str(multi.path))
    got = parts(get(server, multi.url + "/frames/3,1", OHIF_FRAMES))
    assert [b for _h, b in got] == [frames[2].tobytes(), frames[0].tobytes()]
    for bad, status in (("4", 404), ("0", 404), ("1,9", 404), ("x", 400), ("1;2", 400)):
        r = get(server, multi.url + f"/frames/{bad}", OHIF_FRAMES)
        assert r.status_code == status, bad
        assert r.json()["message"]
    single = one(objs, modality="CT")
    r = get(server, single.url + "/frames/2", OHIF_FRAMES)
    assert r.status_code == 404 and "1 frame(s)" in r.json()["message"]


def test_rle_multi_frame_and_deflated_fallback(server, objs) -> None:
    rle = named(objs, "rle.dcm")
    stored = parts(get(server, rle.url + "/frames/2", OHIF_FRAMES))
    frames = list(pydicom.encaps.generate_frames(pydicom.dcmread(rle.path).PixelData,
                                                 number_of_frames=3))
    assert stored[0][1] == frames[1]
    decoded = parts(get(server, rle.url + "/frames/2",
                        'multipart/related; type="application/octet-stream"'))
    assert decoded[0][1] == pixel_array(str(rle.path))[1].astype("<u2").tobytes()
    deflated = named(objs, "defl.dcm")
    [(h, body)] = parts(get(server, deflated.url + "/frames/1", OHIF_FRAMES))
    assert h["content-type"].endswith(EXPLICIT_LE)
    assert body == pydicom.dcmread(deflated.path).pixel_array.astype("<u2").tobytes()


def test_frames_not_acceptable(server, objs) -> None:
    rle = named(objs, "rle.dcm")
    r = get(server, rle.url + "/frames/1", 'multipart/related; type="image/jp2"')
    assert r.status_code == 406 and "1.2.840.10008.1.2.5" in r.json()["message"]


# ------------------------------------------------------------------ metadata
def test_metadata_links_etag_and_gzip(server, objs) -> None:
    ct = [o for o in objs if o.modality == "CT"]
    url = f"/dicomweb/studies/{ct[0].study}/series/{ct[0].series}/metadata"
    r = get(server, url, "application/dicom+json", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/dicom+json"
    docs = r.json()
    assert len(docs) == len(ct)
    prefix = f"{server.url}/dicomweb/studies/{ct[0].study}/series/{ct[0].series}/instances/"
    assert all(d["7FE00010"]["BulkDataURI"].startswith(prefix) for d in docs)
    assert get(server, url, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    packed = requests.get(server.url + url, headers={"Accept-Encoding": "gzip"}, stream=True)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.raw.read()) == r.content
    composite = get(server, url, 'multipart/related; type="application/dicom+xml", '
                                 "application/dicom+json;q=0.9, */*;q=0.1")
    assert composite.status_code == 200 and composite.json() == docs


def test_metadata_levels(server, objs) -> None:
    o = objs[0]
    study = get(server, f"/dicomweb/studies/{o.study}/metadata").json()
    assert len(study) == sum(x.study == o.study for x in objs)
    [inst] = get(server, o.url + "/metadata").json()
    assert inst["00080018"]["Value"] == [o.sop]


def test_bulk_data(server, objs) -> None:
    ct = one(objs, modality="CT")
    [meta] = get(server, ct.url + "/metadata").json()
    uri = meta["7FE00010"]["BulkDataURI"]
    [(_h, body)] = parts(requests.get(uri, headers={"Accept": OHIF_FRAMES}))
    assert body == pydicom.dcmread(ct.path).PixelData
    raw = requests.get(uri, headers={"Accept": "application/octet-stream"})
    assert raw.headers["Content-Type"] == "application/octet-stream"
    assert raw.content == pydicom.dcmread(ct.path).PixelData
    ovl = named(objs, "ovl.dcm")
    [meta] = get(server, ovl.url + "/metadata").json()
    octet = 'multipart/related; type="application/octet-stream"'
    [(_h, body)] = parts(requests.get(meta["60003000"]["BulkDataURI"], headers={"Accept": octet}))
    assert body == bytes(range(256)) * 32
    assert get(server, ovl.url + "/bulk/00100010").status_code == 404
    rle = named(objs, "rle.dcm")  # encapsulated pixel data: one part per frame
    frames = parts(get(server, rle.url + "/bulk/7FE00010", OHIF_FRAMES))
    expected = pydicom.encaps.generate_frames(pydicom.dcmread(rle.path).PixelData,
                                              number_of_frames=3)
    assert [b for _h, b in frames] == list(expected)


# ------------------------------------------------------------------ rendered
def png_pixels(r: requests.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)))


def expected_levels(path: Path, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear window, computed independently of the gateway."""
    ds = pydicom.dcmread(path)
    x = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1 - y
    return np.rint(y * 255)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_rendered_uses_the_images_own_window(server, objs, photometric) -> None:
    o = next(o for o in objs if o.photometric == photometric and o.modality in ("CT", "CR", "DX"))
    ds = pydicom.dcmread(o.path, stop_before_pixels=True)
    center = float(ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)
    width = float(ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth)
    shown = png_pixels(get(server, o.url + "/rendered", "image/png")).astype(float)
    assert np.abs(shown - expected_levels(o.path, center, width)).max() <= 1
    other = png_pixels(get(server, o.url + "/rendered", "image/png",
                           params={"window": f"{center + 200},{width / 2},linear"}))
    assert not np.array_equal(other, shown)


def test_rendered_without_any_window_stretches_the_frame(server, objs) -> None:
    multi = named(objs, "multi.dcm")  # no window attributes, three frames
    frame = pixel_array(str(multi.path))[1].astype(float)
    expected = np.rint((frame - frame.min()) / (frame.max() - frame.min()) * 255)
    shown = png_pixels(get(server, multi.url + "/frames/2/rendered", "image/png"))
    assert np.abs(shown.astype(float) - expected).max() <= 1


def test_rendered_parameters(server, objs) -> None:
    ct = one(objs, modality="CT")
    jpeg = get(server, ct.url + "/rendered", "image/jpeg")
    assert jpeg.headers["Content-Type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    small = get(server, ct.url + "/rendered", "image/jpeg", params={"quality": "10"})
    assert len(small.content) < len(jpeg.content)
    vp = get(server, ct.url + "/frames/1/rendered",
             params={"viewport": "100,50", "accept": "image/png"})
    assert vp.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(vp.content)).size == (50, 50)
    for bad in ({"quality": "0"}, {"viewport": "a,b"}, {"window": "1"}):
        r = get(server, ct.url + "/rendered", params=bad)
        assert r.status_code == 400 and next(iter(bad)) in r.json()["message"]
    assert get(server, ct.url + "/rendered", "application/pdf").status_code == 406


def test_study_and_series_rendered_and_thumbnails(server, objs) -> None:
    ct = [o for o in objs if o.modality == "CT"]
    series_url = f"/dicomweb/studies/{ct[0].study}/series/{ct[0].series}"
    got = parts(get(server, series_url + "/rendered", "image/jpeg"))
    assert len(got) == len(ct) and all(b[:2] == b"\xff\xd8" for _h, b in got)
    for url in (series_url + "/thumbnail", f"/dicomweb/studies/{ct[0].study}/thumbnail",
                ct[0].url + "/thumbnail"):
        r = get(server, url, "image/jpeg")
        image = Image.open(io.BytesIO(r.content))
        assert r.headers["Content-Type"] == "image/jpeg" and max(image.size) == 128
        assert get(server, url, "image/jpeg").content == r.content
    cached = list((server.data_dir / "cache").rglob("*.jpg"))
    assert cached and any(ct[0].sop in p.name for p in cached)


# ----------------------------------------------------------------- WADO-URI
def wado(server: GatewayServer, o: Obj, **params: str) -> requests.Response:
    base = {"requestType": "WADO", "studyUID": o.study, "seriesUID": o.series, "objectUID": o.sop}
    return requests.get(f"{server.url}/wado", params={**base, **params}, timeout=30)


def test_wado_uri(server, objs) -> None:
    j2k = one(objs, ts=J2K)
    r = wado(server, j2k, contentType="application/dicom", transferSyntax="*")
    assert r.headers["Content-Type"] == "application/dicom"
    assert r.content == j2k.path.read_bytes()
    plain = wado(server, j2k, contentType="application/dicom")
    default = pydicom.dcmread(io.BytesIO(plain.content))
    assert default.file_meta.TransferSyntaxUID == EXPLICIT_LE  # PS3.18 9.4.2.4 default
    jpeg = wado(server, j2k)
    assert jpeg.headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(wado(server, j2k, rows="64", columns="64").content))
    assert max(image.size) == 64
    r = requests.get(f"{server.url}/wado", params={"requestType": "WADO", "studyUID": j2k.study,
                                                    "seriesUID": j2k.series})
    assert r.status_code == 400 and "objectUID" in r.json()["message"]
    assert wado(server, j2k, requestType="WADO-RS").status_code == 400
    assert wado(server, j2k, objectUID="1.2.3.4").status_code == 404
    assert wado(server, j2k, contentType="video/mpeg").status_code == 406


# ------------------------------------------------------------------ OpenAPI
def test_openapi_describes_every_route(server) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    from gateway import create_app
    doc = requests.get(server.url + "/openapi.json").json()
    validator.validate(doc)
    app = create_app(Settings().replace(data_dir=server.data_dir))
    import re
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("dicomweb.", "wado_uri.")):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                op = doc["paths"][path][method.lower()]
                assert op["summary"] and "200" in op["responses"], (path, method)
