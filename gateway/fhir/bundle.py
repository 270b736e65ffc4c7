"""Bundles and resource shaping, assembled from pre-serialised JSON bodies.

A searchset is built by splicing stored bodies into the Bundle bytes: the common path
(no ``_elements``/``_summary``) never parses a resource. Links start with PUBLIC_URL so that
clients which check the base (fhirpy) follow them.
"""
from __future__ import annotations

import random
from typing import Iterable
from urllib.parse import urlencode

import orjson

from ..clinical import resources
from .search import SearchRequest

# R4 search 3.1.1.5.9/10: a subsetted resource carries the v3-ObservationValue SUBSETTED tag.
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}


def link_url(base: str, path: str, params: Iterable[tuple[str, str]], offset: int | None = None) -> str:
    items = list(params) + ([("_offset", str(offset))] if offset else [])
    query = urlencode(items, safe=":,|/")
    return f"{base}/{path}" + (f"?{query}" if query else "")


def link(relation: str, url: str) -> bytes:
    """One Bundle.link as JSON, computed once per search plan."""
    return orjson.dumps({"relation": relation, "url": url})


def entry_prefix(base: str, kind: str) -> bytes:
    """The bytes before the id in an entry's fullUrl, shared by every entry of a type."""
    return b'{"fullUrl":"' + f"{base}/{kind}/".encode()


def entry(base: str, kind: str, rid: str, body: bytes, mode: str = "match") -> bytes:
    return (entry_prefix(base, kind) + rid.encode() + b'","resource":' + body
            + b',"search":{"mode":"' + mode.encode() + b'"}}')


MATCH_TAIL = b',"search":{"mode":"match"}}'
_HEAD = b'{"resourceType":"Bundle","id":"'
# uuid.UUID(version=4) bit layout: version nibble 4, RFC 4122 variant.
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def bundle_id() -> str:
    """A random version-4 UUID. Bundle ids need uniqueness, not secrecy: the Mersenne Twister
    (reseeded in every forked worker) avoids a getrandom() system call per search."""
    h = "%032x" % ((random.getrandbits(128) & _V4_CLEAR) | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def searchset_tail(entries: list[bytes], total: int | None, links: list[bytes]) -> bytes:
    """A searchset Bundle after its id, from pre-serialised links and entries: the same bytes
    orjson writes for resourceType, id, type, total, link, entry in that order."""
    parts = [b'","type":"searchset"']
    if total is not None:
        parts.append(b',"total":%d' % total)
    parts += [b',"link":[', b",".join(links), b"]"]
    if entries:  # fhirpy: an empty Bundle has no ``entry``
        parts += [b',"entry":[', b",".join(entries), b"]"]
    parts.append(b"}")
    return b"".join(parts)


def with_id(tail: bytes) -> bytes:
    """The whole Bundle: every response gets its own id, cached or not."""
    return b"".join((_HEAD, bundle_id().encode(), tail))


def searchset(entries: list[bytes], *, total: int | None, links: list[tuple[str, str]]) -> bytes:
    return with_id(searchset_tail(entries, total, [link(rel, url) for rel, url in links]))


def shape(body: bytes, request: SearchRequest | None) -> bytes:
    """Apply ``_summary``/``_elements`` (R4 search 3.1.1.5.9-10); unchanged bytes otherwise."""
    if request is None or (not request.elements and request.summary in (None, "count")):
        return body
    doc = orjson.loads(body)
    kind = doc["resourceType"]
    if request.summary == "data":
        doc.pop("text", None)
        return orjson.dumps(doc)
    keep: frozenset[str] | set[str]
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
