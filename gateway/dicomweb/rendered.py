"""Rendered and thumbnail responses (PS3.18 10.4.1.1.3, 10.4.1.1.4).

Instance and frame resources answer one image. A study or series ``rendered``
resource answers every image instance, one part each, rendered while streaming;
its ``thumbnail`` is one representative image (the middle instance of the first
series with pixel data). Thumbnails are cached on disk under ``<DATA_DIR>/cache``.
Rendered images are not cached in memory: a viewer asks for each slice once (its repeats
carry another window or viewport), and a first request costs ~1.8 ms in process.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from flask import Response

from ..archive.errors import NotAcceptable, NotFound
from ..archive.protocol import Archive, StoredInstance
from . import multipart, pixels, render
from .caches import RenderCaches
from .render import RenderParams
from .zerocopy import check_stored


def image_bytes(archive: Archive | None, inst: StoredInstance, frame: int, params: RenderParams,
                cache_dir: Path | None = None, caches: RenderCaches | None = None) -> bytes:
    """One rendered frame; from (and into) the disk cache when ``cache_dir`` is given.
    ``archive`` lends its stored metadata to the native fast path (native.py); ``caches``
    keeps layouts and grey tables between requests."""
    if inst.number_of_frames == 0:
        raise NotAcceptable(f"instance {inst.sop_uid} has no pixel data to render")
    if not 1 <= frame <= inst.number_of_frames:
        raise NotFound(f"frame {frame} does not exist: instance {inst.sop_uid} has "
                       f"{inst.number_of_frames} frame(s), numbered from 1")
    path = (render.cache_path(cache_dir, inst.sop_uid, inst.path.name, frame, params)
            if cache_dir else None)
    if path is not None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
    check_stored([inst])
    array, header = pixels.decode(inst, frame, archive, caches.layouts if caches else None)
    data = render.render(array, header, params, caches.luts if caches else None)
    if path is not None:
        render.cache_put(path, data)
    return data


def image_response(archive: Archive | None, inst: StoredInstance, frame: int,
                   params: RenderParams, cache_dir: Path | None = None,
                   caches: RenderCaches | None = None) -> Response:
    data = image_bytes(archive, inst, frame, params, cache_dir, caches)
    response = Response(data)
    response.headers["Content-Type"] = params.media
    return response


def representative(instances: list[StoredInstance]) -> StoredInstance:
    """Middle image of the first series that has pixel data (instances come ordered)."""
    images = [i for i in instances if i.number_of_frames]
    if not images:
        raise NotAcceptable("nothing here has pixel data to render")
    series = [i for i in images if i.series_uid == images[0].series_uid]
    return series[len(series) // 2]


def multipart_response(archive: Archive | None, instances: list[StoredInstance],
                       params: RenderParams, caches: RenderCaches | None = None) -> Response:
    """Every image instance rendered (frame 1), streamed one part at a time. The files are
    checked and the first image rendered before the status line, so bad parameters (a
    region outside the image) are a 400; later errors can only cut the response short."""
    images = [i for i in instances if i.number_of_frames]
    if not images:
        raise NotAcceptable("nothing here has pixel data to render")
    check_stored(images)
    first = image_bytes(archive, images[0], 1, params, caches=caches)
    boundary = multipart.new_boundary()
    parts = itertools.chain([(params.media, [first])],
                            ((params.media, _lazy(archive, inst, params, caches))
                             for inst in images[1:]))
    response = Response(multipart.stream(parts, boundary), direct_passthrough=True)
    response.headers["Content-Type"] = multipart.content_type(params.media, boundary)
    return response


def _lazy(archive: Archive | None, inst: StoredInstance, params: RenderParams,
          caches: RenderCaches | None) -> Iterator[bytes]:
    yield image_bytes(archive, inst, 1, params, caches=caches)
