"""``/collections/{name}/dicomweb``: the DICOMweb routes narrowed to one collection.

The ``/dicomweb`` blueprint is registered a second time under the collection's prefix; the
collection in the URL becomes a scope of the request (``context.narrow``), so every view
answers from the narrowed archive unchanged, and links in answers (RetrieveURL,
BulkDataURI) start with the collection's root. An unknown collection is a 404 in the
family's JSON form before any view runs.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Flask, g

from .. import context
from ..archive.scope import Scope
from .errors import DicomwebError

PREFIX = "/collections/<collection>/dicomweb"
NAME = "collection_dicomweb"


def root_path() -> str:
    """This request's DICOMweb root below the public base."""
    return g.get("dicomweb_root", "/dicomweb")


def enter_collection(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """url_value_preprocessor of the blueprint: a collection root narrows the request."""
    if not values or "collection" not in values:
        return
    name = values.pop("collection")
    context.narrow(Scope(collections=frozenset({name})))
    if not context.archive().has_collection(name) and name not in context.known_collections():
        raise DicomwebError(404, f"no collection {name!r} in this archive")
    g.dicomweb_root = "/collections/" + quote(name, safe="") + "/dicomweb"


def register(app: Flask, bp: Any) -> None:
    app.register_blueprint(bp, name=NAME, url_prefix=PREFIX)
