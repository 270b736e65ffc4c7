"""WADO-URI (PS3.18 9): ``/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=``.

Legacy viewers (Cornerstone's ``wadouri:`` loader) fetch whole Part 10 files here;
``contentType=image/jpeg`` (our default for images when contentType is absent) renders
one frame with the same pipeline as WADO-RS rendered resources. ``transferSyntax``
defaults to Explicit VR Little Endian (PS3.18 9.4.2.4); ``*`` means "as stored".
"""
from __future__ import annotations

from flask import Blueprint, Response, request

from .. import context
from ..archive.errors import InvalidQuery, NotAcceptable
from ..archive.protocol import StoredInstance, UidPath
from . import rendered, transcode
from .caches import caches
from .errors import register_handlers
from .media import ANY_SYNTAX, DICOM, RENDERED_TYPES, default_syntax
from .render import MAX_SIDE, RenderParams, check_area, window_ok
from .wado import primed
from .zerocopy import FilePart, FilesResponse, check_stored

bp = Blueprint("wado_uri", __name__)
register_handlers(bp)

SUPPORTED = (DICOM, *RENDERED_TYPES)


@bp.get("/wado")
def wado() -> Response:
    args = request.args
    if args.get("requestType", "").upper() != "WADO":
        raise InvalidQuery("requestType must be WADO (PS3.18 9.1.2.1.1)", "requestType")
    uids = [(name, args.get(name, "").strip()) for name in ("studyUID", "seriesUID", "objectUID")]
    missing = [name for name, value in uids if not value]
    if missing:
        raise InvalidQuery(f"missing required parameter {missing[0]}", missing[0])
    if args.get("anonymize", "").lower() == "yes":
        raise NotAcceptable("anonymize=yes is not supported (the archive holds de-identified "
                            "TCIA data; nothing further is removed)")
    archive = context.archive()
    inst = archive.instance(UidPath(*(v for _n, v in uids)))
    content_type = _content_type(args.get("contentType"), inst)
    if content_type == DICOM:
        return _dicom(inst, args.get("transferSyntax"))
    return rendered.image_response(archive, inst,
                                   _int(args.get("frameNumber"), "frameNumber", 1),
                                   _params(content_type), caches=caches().render)


def _content_type(value: str | None, inst: StoredInstance) -> str:
    """First supported of a comma list; absent: image/jpeg for images, else DICOM."""
    if not value:
        return "image/jpeg" if inst.number_of_frames else DICOM
    for item in value.split(","):
        mime = item.split(";")[0].strip().lower()
        if mime in ("*/*", "image/*"):
            return "image/jpeg" if inst.number_of_frames else DICOM
        if mime in SUPPORTED:
            return mime
    raise NotAcceptable(f"contentType {value!r} is not supported; use one of "
                        f"{', '.join(SUPPORTED)}")


def _dicom(inst: StoredInstance, syntax: str | None) -> Response:
    """The Part 10 file: as stored when it already is in the wanted syntax (PS3.18 9.4.2.4)."""
    syntax = (syntax or "").strip()
    target = inst.transfer_syntax if syntax == ANY_SYNTAX else syntax or default_syntax(
        inst.transfer_syntax)
    if not transcode.feasible(inst.transfer_syntax, target):
        raise NotAcceptable(f"cannot convert {inst.sop_uid} from {inst.transfer_syntax} to "
                            f"{target}; available: "
                            f"{', '.join(transcode.targets_for(inst.transfer_syntax))}")
    check_stored([inst])
    if target == inst.transfer_syntax and inst.remote is not None:  # an object store
        response: Response = Response(primed(inst.chunks()), direct_passthrough=True)
        response.content_length = inst.size
    elif target == inst.transfer_syntax:  # sendfile under gunicorn (zerocopy.py)
        response = FilesResponse([FilePart(inst.path, inst.size)])
    else:
        response = Response(transcode.transcode(inst.local(), target))
    response.headers["Content-Type"] = DICOM
    return response


def _int(text: str | None, name: str, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidQuery(f"{name}={text[:40]!r}: expected an integer", name) from None


def _params(media: str) -> RenderParams:
    """rows/columns bound the image; windowCenter/Width; imageQuality (PS3.18 9.4.1.2).
    The same limits as WADO-RS rendered: MAX_RENDERED_PIXELS, a finite window of width > 0."""
    args = request.args
    quality = _int(args.get("imageQuality"), "imageQuality", 90)
    if not 1 <= quality <= 100:
        raise InvalidQuery(f"imageQuality={quality}: expected 1..100", "imageQuality")
    max_pixels = context.settings().max_rendered_pixels
    rows, cols = _side(args.get("rows"), "rows"), _side(args.get("columns"), "columns")
    if rows and cols:
        check_area(cols, rows, max_pixels, "rows")
    viewport = (cols, rows) if rows or cols else None  # 0: that side follows the aspect ratio
    window = None
    if args.get("windowCenter") or args.get("windowWidth"):
        try:
            center, width = float(args["windowCenter"]), float(args["windowWidth"])
        except (KeyError, ValueError):
            raise InvalidQuery("windowCenter and windowWidth must both be numbers",
                               "windowCenter") from None
        if not window_ok(center, width):
            raise InvalidQuery(f"windowCenter={center}, windowWidth={width}: expected finite "
                               "numbers (float32) and a width > 0",
                               "windowWidth" if window_ok(center, 1.0) else "windowCenter")
        window = (center, width, "linear")
    return RenderParams(media, quality, viewport, window, max_pixels)


def _side(text: str | None, name: str) -> int:
    """rows or columns: absent 0, else 1..65535 (an image side is US, PS3.3 C.7.6.3.1)."""
    value = _int(text, name, 0)
    if text and not 1 <= value <= MAX_SIDE:
        raise InvalidQuery(f"{name}={value}: expected 1 to {MAX_SIDE}", name)
    return value
