"""``/openapi.json``: an OpenAPI 3.1 description of the DICOMweb and WADO-URI routes.

Paths come from the app's own URL map (so a new route cannot be forgotten silently:
a test checks every rule has a described operation); what each one means is data
below, written once.
"""
from __future__ import annotations

import re

import orjson
from flask import Blueprint, Flask, Response, current_app

from .. import context
from ..version import __version__
from .caches import caches

bp = Blueprint("openapi", __name__)

_ARG = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
PATH_DOC = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID",
            "instance": "SOPInstanceUID", "frame": "Frame number (from 1)",
            "frame_list": "Comma-separated frame numbers, from 1 (e.g. 1,2,5)",
            "tag": "Tag of the bulk data element, 8 hex digits (as in the BulkDataURI)"}


def _q(name: str, doc: str, schema: dict | None = None, repeat: bool = False) -> dict:
    schema = schema or {"type": "string"}
    if repeat:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "description": doc, "schema": schema,
            "explode": True, "required": False}


QIDO_PARAMS = [
    {"name": "match", "in": "query", "style": "form", "explode": True, "required": False,
     "description": "{attributeID}={value}: match on any indexed attribute by keyword or tag "
     "(PatientID or 00100020): single value, * and ? wildcards, DA/TM ranges (a-b, a-, -b), "
     "UID lists (comma or backslash), empty value = return it. PS3.18 8.3.4.1.",
     "schema": {"type": "object", "additionalProperties": {"type": "string"}}},
    _q("includefield", "Attribute keyword/tag to return, comma list or repeated; `all` returns "
       "every non-bulk attribute of the first instance.", repeat=True),
    _q("fuzzymatching", "true: each word of a person name query matches a name word prefix.",
       {"type": "boolean"}),
    _q("limit", "Maximum results (server maximum MAX_QIDO_RESULTS, default 5000).",
       {"type": "integer", "minimum": 0}),
    _q("offset", "Results to skip (stable order).", {"type": "integer", "minimum": 0}),
]
RENDER_PARAMS = [
    _q("accept", "Media type, overrides the Accept header (image/jpeg, image/png, image/gif)."),
    _q("quality", "JPEG quality 1-100 (default 90).", {"type": "integer"}),
    _q("viewport", "vw,vh[,sx,sy,sw,sh]: fit inside vw x vh keeping the aspect ratio."),
    _q("window", "center,width[,linear|linear-exact|sigmoid]; default: the image's own window."),
]
WADO_URI_PARAMS = [
    _q("requestType", "Must be WADO."), _q("studyUID", "StudyInstanceUID."),
    _q("seriesUID", "SeriesInstanceUID."), _q("objectUID", "SOPInstanceUID."),
    _q("contentType", "application/dicom, image/jpeg (default for images), image/png, image/gif."),
    _q("transferSyntax", "For application/dicom: default Explicit VR Little Endian; "
       "* = as stored."),
    _q("frameNumber", "Frame to render (from 1).", {"type": "integer"}),
    _q("rows", "Maximum rows of the rendered image.", {"type": "integer"}),
    _q("columns", "Maximum columns of the rendered image.", {"type": "integer"}),
    _q("windowCenter", "VOI window center.", {"type": "number"}),
    _q("windowWidth", "VOI window width.", {"type": "number"}),
    _q("imageQuality", "JPEG quality 1-100.", {"type": "integer"}),
]
JSON_ARRAY = {"application/dicom+json": {"schema": {"type": "array", "items": {"type": "object"}}}}
MULTIPART = {"multipart/related": {"schema": {"type": "string", "format": "binary"}}}
IMAGES = {t: {"schema": {"type": "string", "format": "binary"}}
          for t in ("image/jpeg", "image/png", "image/gif")}
ERRORS = {"400": "Malformed request (the message names the parameter)", "404": "No such resource",
          "406": "Requested media type or transfer syntax not available",
          "502": "PACS answered with a failure", "503": "Archive unavailable",
          "504": "PACS timeout"}

NOT_MODIFIED = ("Not modified (If-None-Match)", None)
STOW_JSON = {"application/dicom+json": {"schema": {"type": "object"}}}


def _qido(summary: str) -> tuple[str, str, list, dict]:
    return ("QIDO-RS", f"{summary} (PS3.18 10.6)", QIDO_PARAMS, {
        "200": ("Matches (empty array when none); Warning: 299 when more can be requested",
                JSON_ARRAY), "304": NOT_MODIFIED})


def _retrieve(level: str) -> tuple[str, str, list, dict]:
    return ("WADO-RS", (f"Retrieve the {level} as multipart/related; type=application/dicom "
                        "(Accept transfer-syntax: a UID, * = as stored; default Explicit VR "
                        "Little Endian) (PS3.18 10.4.1.1.1)"), [],
            {"200": ("Instances", MULTIPART)})


def _metadata(level: str) -> tuple[str, str, list, dict]:
    return ("WADO-RS", f"Metadata of the {level} (DICOM JSON, absolute BulkDataURIs)", [],
            {"200": ("Metadata", JSON_ARRAY), "304": NOT_MODIFIED})


# endpoint → (tag, summary, query parameters, success responses)
OPERATIONS: dict[str, tuple[str, str, list, dict]] = {
    "dicomweb.search_studies": _qido("Search for studies"),
    "dicomweb.search_series": _qido("Search for series"),
    "dicomweb.search_study_series": _qido("Search for series of a study"),
    "dicomweb.search_instances": _qido("Search for instances"),
    "dicomweb.search_study_instances": _qido("Search for instances of a study"),
    "dicomweb.search_series_instances": _qido("Search for instances of a series"),
    **{f"dicomweb.retrieve_{lvl}": _retrieve(lvl) for lvl in ("study", "series", "instance")},
    **{f"dicomweb.{lvl}_metadata": _metadata(lvl) for lvl in ("study", "series", "instance")},
    "dicomweb.retrieve_frames": (
        "WADO-RS", ("Retrieve frames: one part per frame, each with transfer-syntax= "
                    "(PS3.18 10.4.1.1.4)"), [], {"200": ("Frames", MULTIPART)}),
    "dicomweb.retrieve_bulk": (
        "WADO-RS", "Retrieve bulk data named by a BulkDataURI", [],
        {"200": ("Bulk data", MULTIPART)}),
    "dicomweb.rendered_many": (
        "WADO-RS", "Rendered images of every image instance, one part each", RENDER_PARAMS,
        {"200": ("Images", MULTIPART)}),
    "dicomweb.rendered_one": (
        "WADO-RS", "Rendered instance or frame", RENDER_PARAMS, {"200": ("Image", IMAGES)}),
    "dicomweb.thumbnail_many": (
        "WADO-RS", "Thumbnail of a representative image (128 px by default)", RENDER_PARAMS,
        {"200": ("Image", IMAGES)}),
    "dicomweb.thumbnail_one": (
        "WADO-RS", "Thumbnail of an instance or frame", RENDER_PARAMS,
        {"200": ("Image", IMAGES)}),
    "dicomweb.store": (
        "STOW-RS", ("Store instances: multipart/related; type=application/dicom, chunked or "
                    "not (PS3.18 10.5)"), [], {
            "200": ("All stored", STOW_JSON),
            "202": ("Some failed (FailedSOPSequence with FailureReason)", STOW_JSON),
            "409": ("None stored", STOW_JSON), "413": ("Body exceeds MAX_UPLOAD_BYTES", None),
            "415": ("Not multipart/related of application/dicom", None)}),
    "wado_uri.wado": (
        "WADO-URI", "Retrieve a DICOM object or a rendered image (PS3.18 9)", WADO_URI_PARAMS,
        {"200": ("Object", {"application/dicom": {}, **IMAGES})}),
    "openapi.document": (
        "Meta", "This document", [],
        {"200": ("OpenAPI 3.1", {"application/json": {"schema": {"type": "object"}}})}),
}


def _operation_id(method: str, path: str) -> str:
    return method + "".join(p.strip("{}").title() for p in path.split("/") if p)


def _operation(endpoint: str, method: str, path: str, arguments: list[str]) -> dict:
    tag, summary, query, ok = OPERATIONS[endpoint]
    responses = {code: {"description": desc, **({"content": content} if content else {})}
                 for code, (desc, content) in ok.items()}
    responses.update({code: {"description": desc} for code, desc in ERRORS.items()})
    params = [{"name": a, "in": "path", "required": True, "description": PATH_DOC.get(a, a),
               "schema": {"type": "integer" if a == "frame" else "string"}} for a in arguments]
    return {"tags": [tag], "summary": summary, "operationId": _operation_id(method, path),
            "parameters": params + query, "responses": responses}


def build(app: Flask, server: str) -> dict:
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in OPERATIONS:
            continue
        path = _ARG.sub(r"{\1}", rule.rule)
        args = _ARG.findall(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, method.lower(),
                                                                    path, args)
    return {"openapi": "3.1.0",
            "info": {"title": "tcia-gateway DICOMweb", "version": __version__,
                     "description": "QIDO-RS, WADO-RS, STOW-RS and WADO-URI over the archive. "
                                    "Conformance details: docs/dicomweb.md."},
            "servers": [{"url": server}], "paths": dict(sorted(paths.items()))}


@bp.get("/openapi.json")
def document() -> Response:
    server = context.public_base()  # built once per app and public base
    body = caches().openapi.get_or_put(server, lambda: orjson.dumps(build(current_app, server)))
    response = Response(body)
    response.headers["Content-Type"] = "application/json"
    return response
