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
from ..archive.attributes import ATTRIBUTES, visible_at
from ..archive.protocol import Level
from ..version import __version__
from .caches import caches
from .qido import MAX_OFFSET
from .render import MAX_SIDE

bp = Blueprint("openapi", __name__)

_ARG = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
PATH_DOC = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID",
            "instance": "SOPInstanceUID", "frame": "Frame number (from 1)",
            "frame_list": "Comma-separated frame numbers, from 1 (e.g. 1,2,5)",
            "tag": "Tag of the bulk data element, 8 hex digits (as in the BulkDataURI)"}


UID = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$", "maxLength": 64}  # PS3.5 9.1
PATH_SCHEMA = {"study": UID, "series": UID, "instance": UID,
               "frame": {"type": "integer", "minimum": 1},
               "frame_list": {"type": "string", "pattern": r"^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})*$"},
               "tag": {"type": "string", "pattern": "^[0-9A-Fa-f]{8}$"}}
DATE = r"[0-9]{8}"
TIME = r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?"
# Query values by VR (PS3.4 C.2.2.2 matching; PS3.18 8.3.4.1): what the matcher takes.
MATCH_SCHEMA: dict[str, dict] = {
    "DA": {"type": "string", "pattern": f"^({DATE}|{DATE}-|-{DATE}|{DATE}-{DATE})?$"},
    "TM": {"type": "string", "pattern": f"^({TIME}|{TIME}-|-{TIME}|{TIME}-{TIME})?$"},
    "UI": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)*([,\\][0-9]+(\.[0-9]+)*)*)?$"},
    "IS": {"type": "integer", "minimum": -(1 << 31), "maximum": (1 << 31) - 1},
    "US": {"type": "integer", "minimum": 0, "maximum": 0xFFFF},
    "CS": {"type": "string", "maxLength": 16},
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
DATASETS = {"type": "array", "items": {"$ref": "#/components/schemas/DicomDataset"}}
COMPONENTS = {"schemas": {
    "Error": {
        "type": "object", "required": ["status", "error", "message"],
        "description": "Every DICOMweb and WADO-URI error (PS3.18 8.6.3 leaves the payload open)",
        "properties": {"status": {"type": "integer"}, "error": {"type": "string"},
                       "message": {"type": "string", "description": "what to change"},
                       "attribute": {"type": "string", "description": "the parameter at fault"},
                       "dimseStatus": {"type": "string", "pattern": "^0x[0-9A-F]{4}$"}}},
    "DicomDataset": {
        "type": "object", "description": "DICOM JSON Model (PS3.18 F.2)",
        "patternProperties": {"^[0-9A-F]{8}$": {"$ref": "#/components/schemas/DicomAttribute"}},
        "additionalProperties": False},
    "DicomAttribute": {
        "type": "object", "required": ["vr"], "additionalProperties": False,
        "properties": {"vr": {"type": "string", "pattern": "^[A-Z]{2}$"},
                       "Value": {"type": "array", "items": {"anyOf": [
                           {"type": ["string", "number", "null"]},
                           {"$ref": "#/components/schemas/PersonName"},
                           {"$ref": "#/components/schemas/DicomDataset"}]}},
                       "BulkDataURI": {"type": "string"},
                       "InlineBinary": {"type": "string", "contentEncoding": "base64"}}},
    "PersonName": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {k: {"type": "string"} for k in ("Alphabetic", "Ideographic", "Phonetic")}},
}}


def _q(name: str, doc: str, schema: dict | None = None, repeat: bool = False) -> dict:
    schema = schema or {"type": "string"}
    if repeat:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "description": doc, "schema": schema,
            "explode": True, "required": False}


def _match_params(level: Level) -> list[dict]:
    """One parameter per indexed attribute matchable at ``level``; any other keyword or
    tag is accepted too (returned, not matched, when the index lacks it)."""
    return [_q(a.keyword, f"{a.keyword} ({a.tag}, {a.vr}): single value, * and ? wildcards"
               + (", ranges a-b, a-, -b" if a.vr in ("DA", "TM") else "")
               + (", lists (comma or backslash)" if a.vr in ("UI", "CS") else ""),
               MATCH_SCHEMA.get(a.vr, {"type": "string", "maxLength": 64}))
            for a in ATTRIBUTES if visible_at(a, level)
            and (not a.computed or a.keyword == "ModalitiesInStudy")]


QIDO_PARAMS = [
    _q("includefield", "Attribute keyword/tag to return, comma list or repeated; `all` returns "
       "every non-bulk attribute of the first instance.",
       {"type": "string", "pattern": "^([0-9A-Fa-f]{8}|[A-Za-z][A-Za-z0-9]*)(,([0-9A-Fa-f]{8}|"
        "[A-Za-z][A-Za-z0-9]*))*$"}, repeat=True),
    _q("fuzzymatching", "true: each word of a person name query matches a name word prefix.",
       {"type": "boolean"}),
    _q("limit", "Maximum results (server maximum MAX_QIDO_RESULTS, default 5000).",
       {"type": "integer", "minimum": 0}),
    _q("offset", "Results to skip (stable order).",
       {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
]
VIEWPORT = r"^[0-9]{1,5},[0-9]{1,5}(,[0-9]{1,5},[0-9]{1,5},[0-9]{0,5},[0-9]{0,5})?$"
RENDER_PARAMS = [
    _q("accept", "Media type, overrides the Accept header (image/jpeg, image/png, image/gif)."),
    _q("quality", "JPEG quality 1-100 (default 90).",
       {"type": "integer", "minimum": 1, "maximum": 100}),
    _q("viewport", "vw,vh[,sx,sy,sw,sh]: fit inside vw x vh (vw, vh >= 1, vw x vh at most "
       "MAX_RENDERED_PIXELS) keeping the aspect ratio; sx,sy,sw,sh: the source region in "
       "pixels, inside the image (sw, sh empty or 0: to the edge); each at most 65535.",
       {"type": "string", "pattern": VIEWPORT}),
    _q("window", "center,width[,linear|linear-exact|sigmoid] (width > 0); default: the image's "
       "own window.", {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?,[0-9]*[1-9][0-9]*"
                       r"(\.[0-9]+)?(,(linear|linear-exact|sigmoid))?$"}),
]
SYNTAX = {"type": "string", "pattern": r"^(\*|[0-9]+(\.[0-9]+)*)$"}
WADO_URI_PARAMS = [
    {**_q("requestType", "Must be WADO.", {"type": "string", "enum": ["WADO"]}), "required": True},
    {**_q("studyUID", "StudyInstanceUID.", UID), "required": True},
    {**_q("seriesUID", "SeriesInstanceUID.", UID), "required": True},
    {**_q("objectUID", "SOPInstanceUID.", UID), "required": True},
    _q("contentType", "application/dicom, image/jpeg (default for images), image/png, image/gif."),
    _q("transferSyntax", "For application/dicom: default Explicit VR Little Endian; "
       "* = as stored.", SYNTAX),
    _q("frameNumber", "Frame to render (from 1).", {"type": "integer", "minimum": 1}),
    _q("rows", "Maximum rows of the rendered image (rows x columns at most "
       "MAX_RENDERED_PIXELS).", {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}),
    _q("columns", "Maximum columns of the rendered image.",
       {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}),
    _q("windowCenter", "VOI window center.", {"type": "number"}),
    _q("windowWidth", "VOI window width (> 0).", {"type": "number", "exclusiveMinimum": 0}),
    _q("imageQuality", "JPEG quality 1-100.", {"type": "integer", "minimum": 1, "maximum": 100}),
]
JSON_ARRAY = {"application/dicom+json": {"schema": DATASETS}, "application/json": {"schema": DATASETS}}
MULTIPART = {"multipart/related": {"schema": {"type": "string", "format": "binary"}}}
IMAGES = {t: {"schema": {"type": "string", "format": "binary"}}
          for t in ("image/jpeg", "image/png", "image/gif")}
ERRORS = {"400": "Malformed request (the message names the parameter)", "404": "No such resource",
          "406": "Requested media type or transfer syntax not available",
          "502": "PACS answered with a failure", "503": "Archive unavailable",
          "504": "PACS timeout"}

# Answered by the HTTP server in front of the app (gunicorn limit_request_line/_fields).
LIMITS = {"414": "Request line longer than the server takes",
          "431": "Request headers larger than the server takes"}
NOT_MODIFIED = ("Not modified (If-None-Match)", None)
ERROR_JSON = {"application/json": {"schema": ERROR_REF}}
STOW_JSON = {"application/dicom+json": {"schema": {"$ref": "#/components/schemas/DicomDataset"}}}
STOW_BODY = {"required": True, "description": (
    "multipart/related; type=\"application/dicom\"; boundary=...: one Part 10 file per part "
    "(PS3.18 10.5.1.2); chunked or with Content-Length (at most MAX_UPLOAD_BYTES)"),
    "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}}}


def _qido(summary: str, level: Level) -> tuple[str, str, list, dict]:
    return ("QIDO-RS", f"{summary} (PS3.18 10.6)", _match_params(level) + QIDO_PARAMS, {
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
    "dicomweb.search_studies": _qido("Search for studies", Level.STUDY),
    "dicomweb.search_series": _qido("Search for series", Level.SERIES),
    "dicomweb.search_study_series": _qido("Search for series of a study", Level.SERIES),
    "dicomweb.search_instances": _qido("Search for instances", Level.INSTANCE),
    "dicomweb.search_study_instances": _qido("Search for instances of a study", Level.INSTANCE),
    "dicomweb.search_series_instances": _qido("Search for instances of a series", Level.INSTANCE),
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
            "409": ("None stored", STOW_JSON),
            "413": ("Body exceeds MAX_UPLOAD_BYTES", ERROR_JSON),
            "415": ("Not multipart/related of application/dicom", ERROR_JSON)}),
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
    responses.update({code: {"description": desc, "content": ERROR_JSON}
                      for code, desc in ERRORS.items()})
    responses.update({code: {"description": desc} for code, desc in LIMITS.items()})
    params = [{"name": a, "in": "path", "required": True, "description": PATH_DOC.get(a, a),
               "schema": PATH_SCHEMA.get(a, {"type": "string"})} for a in arguments]
    operation = {"tags": [tag], "summary": summary, "operationId": _operation_id(method, path),
                 "parameters": params + query, "responses": responses}
    if method == "post":
        operation["requestBody"] = STOW_BODY
    return operation


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
            "servers": [{"url": server}], "paths": dict(sorted(paths.items())),
            "components": COMPONENTS}


@bp.get("/openapi.json")
def document() -> Response:
    server = context.public_base()  # built once per app and public base
    body = caches().openapi.get_or_put(server, lambda: orjson.dumps(build(current_app, server)))
    response = Response(body)
    response.headers["Content-Type"] = "application/json"
    return response
