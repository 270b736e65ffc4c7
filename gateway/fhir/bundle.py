"""Bundles and resource shaping, assembled from pre-serialised JSON bodies.

A searchset is built by splicing stored bodies into the Bundle bytes: the common path
(no ``_elements``/``_summary``) never parses a resource. Links start with PUBLIC_URL so that
clients which check the base (fhirpy) follow them.
"""
from __future__ import annotations

import uuid
from typing import Iterable
from urllib.parse import urlencode

import orjson

from . import resources
from .search import SearchRequest

# R4 search 3.1.1.5.9/10: a subsetted resource carries the v3-ObservationValue SUBSETTED tag.
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}


def link_url(base: str, path: str, params: Iterable[tuple[str, str]], offset: int | None = None) -> str:
    items = list(params) + ([("_offset", str(offset))] if offset else [])
    query = urlencode(items, safe=":,|/")
    return f"{base}/{path}" + (f"?{query}" if query else "")


def entry(base: str, kind: str, rid: str, body: bytes, mode: str = "match") -> bytes:
    return (b'{"fullUrl":"' + f"{base}/{kind}/{rid}".encode() + b'","resource":' + body
            + b',"search":{"mode":"' + mode.encode() + b'"}}')


def searchset(entries: list[bytes], *, total: int | None, links: list[tuple[str, str]]) -> bytes:
    head: dict = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    raw = orjson.dumps(head)
    if not entries:  # fhirpy: an empty Bundle has no ``entry``
        return raw
    return raw[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def shape(body: bytes, request: SearchRequest | None) -> bytes:
    """Apply ``_summary``/``_elements`` (R4 search 3.1.1.5.9-10); unchanged bytes otherwise."""
    if request is None or (not request.elements and request.summary in (None, "count")):
        return body
    doc = orjson.loads(body)
    kind = doc["resourceType"]
    if request.summary == "data":
        doc.pop("text", None)
        return orjson.dumps(doc)
    if request.summary == "true":
        keep = resources.summary_elements(kind)
    elif request.summary == "text":
        keep = {"text"} | resources.mandatory_elements(kind)
    else:
        keep = set(request.elements) | resources.mandatory_elements(kind)
    out = {k: v for k, v in doc.items() if k in keep or k in ("resourceType", "id", "meta")}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return orjson.dumps(out)
