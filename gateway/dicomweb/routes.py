"""The /dicomweb blueprint: thin views (parse, one archive call, serialise).

QIDO-RS PS3.18 10.6 · WADO-RS PS3.18 10.4 · STOW-RS PS3.18 10.5. The views never
know which Archive backend they talk to.
"""
from __future__ import annotations

from pathlib import Path

import orjson
from flask import Blueprint, Response, request

from .. import context
from ..archive.errors import NotAcceptable
from ..archive.protocol import Level, UidPath
from . import frames, media, qido, rendered, stow, wado
from .caches import caches
from .errors import DicomwebError, register_handlers
from .render import RenderParams, parse_params
from .roots import enter_collection
from .web import accept, dicomweb_root, json_response

bp = Blueprint("dicomweb", __name__, url_prefix="/dicomweb")
register_handlers(bp)
bp.url_value_preprocessor(enter_collection)  # /collections/<name>/dicomweb (roots.py)

STUDY = "/studies/<study>"
SERIES = STUDY + "/series/<series>"
INSTANCE = SERIES + "/instances/<instance>"


def _json_type() -> str:
    mimetype = media.json_type(accept())
    if mimetype is None:
        raise NotAcceptable("this resource is available as application/dicom+json only "
                            "(XML is not supported)")
    return mimetype


# ------------------------------------------------------------------ QIDO-RS
def _search(level: Level, where: UidPath = qido.ANYWHERE) -> Response:
    mimetype = _json_type()
    query = qido.parse(level, request.args.items(multi=True), where,
                       max_results=context.settings().max_qido_results)
    result = context.archive().search(query)
    body = orjson.dumps(qido.with_retrieve_urls(result.matches, level, dicomweb_root()))
    headers = {"Warning": qido.TRUNCATED_WARNING} if result.truncated else None
    return json_response(body, mimetype, headers=headers)


@bp.get("/studies")
def search_studies() -> Response:
    return _search(Level.STUDY)


@bp.get("/series")
def search_series() -> Response:
    return _search(Level.SERIES)


@bp.get(STUDY + "/series")
def search_study_series(study: str) -> Response:
    return _search(Level.SERIES, UidPath(study))


@bp.get("/instances")
def search_instances() -> Response:
    return _search(Level.INSTANCE)


@bp.get(STUDY + "/instances")
def search_study_instances(study: str) -> Response:
    return _search(Level.INSTANCE, UidPath(study))


@bp.get(SERIES + "/instances")
def search_series_instances(study: str, series: str) -> Response:
    return _search(Level.INSTANCE, UidPath(study, series))


# ------------------------------------------------------------------ WADO-RS
def _retrieve(where: UidPath) -> Response:
    choices = media.dicom_choices(accept())
    if not choices:
        raise NotAcceptable('instances are available as multipart/related; '
                            'type="application/dicom" only')
    return wado.retrieve_response(list(context.archive().instances(where)), choices)


@bp.get(STUDY)
def retrieve_study(study: str) -> Response:
    return _retrieve(UidPath(study))


@bp.get(SERIES)
def retrieve_series(study: str, series: str) -> Response:
    return _retrieve(UidPath(study, series))


@bp.get(INSTANCE)
def retrieve_instance(study: str, series: str, instance: str) -> Response:
    return _retrieve(UidPath(study, series, instance))


def _metadata(where: UidPath) -> Response:
    mimetype = _json_type()
    doc = context.archive().metadata(where)
    body, etag = wado.metadata_body(caches().metadata, where, dicomweb_root(), doc)
    return json_response(body, mimetype, etag=etag)


@bp.get(STUDY + "/metadata")
def study_metadata(study: str) -> Response:
    return _metadata(UidPath(study))


@bp.get(SERIES + "/metadata")
def series_metadata(study: str, series: str) -> Response:
    return _metadata(UidPath(study, series))


@bp.get(INSTANCE + "/metadata")
def instance_metadata(study: str, series: str, instance: str) -> Response:
    return _metadata(UidPath(study, series, instance))


@bp.get(INSTANCE + "/frames/<frame_list>")
def retrieve_frames(study: str, series: str, instance: str, frame_list: str) -> Response:
    numbers = frames.parse_frame_list(frame_list, context.settings().max_frames_per_request)
    ranges = accept()
    inst = context.archive().instance(UidPath(study, series, instance))
    return frames.frames_response(inst, numbers, ranges)


@bp.get(INSTANCE + "/bulk/<tag>")
def retrieve_bulk(study: str, series: str, instance: str, tag: str) -> Response:
    ranges = accept()
    inst = context.archive().instance(UidPath(study, series, instance))
    return frames.bulk_response(inst, tag, ranges)


# ------------------------------------------------------- rendered / thumbnail
def _render_params(thumbnail: bool = False) -> RenderParams:
    mime = media.rendered_type(accept(), request.args.get("accept"))
    if mime is None:
        raise NotAcceptable("rendered resources are available as image/jpeg, image/png or "
                            "image/gif")
    return parse_params(request.args, mime, thumbnail=thumbnail,
                        max_pixels=context.settings().max_rendered_pixels)


def _cache_dir() -> Path:
    return context.settings().data_dir / "cache" / "thumbnails"


@bp.get(STUDY + "/rendered")
@bp.get(SERIES + "/rendered")
def rendered_many(study: str, series: str | None = None) -> Response:
    params = _render_params()
    archive = context.archive()
    instances = list(archive.instances(UidPath(study, series)))
    return rendered.multipart_response(archive, instances, params, caches().render)


@bp.get(INSTANCE + "/rendered")
@bp.get(INSTANCE + "/frames/<int:frame>/rendered")
def rendered_one(study: str, series: str, instance: str, frame: int = 1) -> Response:
    params = _render_params()
    archive = context.archive()
    inst = archive.instance(UidPath(study, series, instance))
    return rendered.image_response(archive, inst, frame, params, caches=caches().render)


@bp.get(STUDY + "/thumbnail")
@bp.get(SERIES + "/thumbnail")
def thumbnail_many(study: str, series: str | None = None) -> Response:
    params = _render_params(thumbnail=True)
    archive = context.archive()
    instances = list(archive.instances(UidPath(study, series)))
    return rendered.image_response(archive, rendered.representative(instances), 1, params,
                                   _cache_dir(), caches().render)


@bp.get(INSTANCE + "/thumbnail")
@bp.get(INSTANCE + "/frames/<int:frame>/thumbnail")
def thumbnail_one(study: str, series: str, instance: str, frame: int = 1) -> Response:
    params = _render_params(thumbnail=True)
    archive = context.archive()
    inst = archive.instance(UidPath(study, series, instance))
    return rendered.image_response(archive, inst, frame, params, _cache_dir(), caches().render)


# ------------------------------------------------------------------ STOW-RS
@bp.post("/studies")
@bp.post(STUDY)
def store(study: str | None = None) -> Response:
    boundary = stow.boundary_of(request.headers.get("Content-Type"))
    settings = context.settings()
    limits = stow.Limits.of(settings)
    limits.check_length(request.content_length)  # unread: the connection then closes
    archive = context.archive()
    received = stow.receive(request.stream, boundary, limits, archive.spool)
    if not received:
        raise DicomwebError(400, "the multipart body has no parts")
    results = stow.store_all(archive, received, study)
    return stow.response(results, dicomweb_root(), study)
