"""``/collections/{name}/dicomweb``: the DICOMweb routes narrowed to one collection.

The ``/dicomweb`` blueprint is registered a second time under the collection's prefix; the
collection in the URL becomes a scope of the request (``context.narrow``), so every view
answers from the narrowed archive unchanged, and links in answers (RetrieveURL,
BulkDataURI) start with the collection's root. An unknown collection is a 404 in the
family's JSON form before any view runs.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import orjson
from flask import Blueprint, Flask, Response, g

from .. import context
from ..archive.scope import Scope
from ..clinical.collections import CollectionFacts, fhir_id
from .errors import DicomwebError, register_handlers

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


listing = Blueprint("collections", __name__, url_prefix="/collections")
register_handlers(listing)


@listing.get("")
def list_collections() -> Response:
    """The collections this request sees, with counts from the index and their facts."""
    held = context.archive().collections()
    facts = context.collection_facts()
    base = context.public_base()
    body = [describe(name, counts, facts.get(name), base) for name, counts in sorted(held.items())]
    return Response(orjson.dumps(body), mimetype="application/json")


def describe(name: str, counts: dict[str, int], facts: CollectionFacts | None,
             base: str) -> dict[str, Any]:
    root = f"{base}/collections/{quote(name, safe='')}"
    out: dict[str, Any] = {"name": name, "counts": counts, "dicomweb": root + "/dicomweb",
                           "researchStudy": f"{base}/fhir/ResearchStudy/{fhir_id(name)}"}
    if facts is not None:
        fields = asdict(facts)
        out.update({k: fields[k] for k in ("title", "doi", "url", "citation", "description",
                                           "subjects", "status", "access", "modalities")})
        out["licence"] = {"short": facts.licence, "name": facts.licence_name,
                          "url": facts.licence_url}
    return out


def register(app: Flask, bp: Any) -> None:
    app.register_blueprint(bp, name=NAME, url_prefix=PREFIX)
    app.register_blueprint(listing)
