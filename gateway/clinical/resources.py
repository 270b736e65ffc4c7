"""The only place that imports ``fhir.resources`` (R4B models, identical to R4 for our resources).

Everything else asks this module: does an element exist (the mapping loader, at start-up), is
this resource valid (the engine, before storing), which elements are in the summary.
"""
from __future__ import annotations

import functools
import typing
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase

FHIR_VERSION = "4.0.1"  # what the wire says: R4 (R4B models validate these resources identically)


class InvalidResource(ValueError):
    """A resource that fhir.resources rejects; the message names the elements."""


@functools.lru_cache(maxsize=None)
def model(name: str) -> type[Any] | None:
    """The model class for a resource or datatype name, or None if there is none."""
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


def is_resource_type(name: str) -> bool:
    """A FHIR resource type (not a datatype) that the R4B models know."""
    cls, base = model(name), model("Resource")
    return cls is not None and base is not None and issubclass(cls, base)


@functools.lru_cache(maxsize=None)
def _fields(cls: type[Any]) -> dict[str, Any]:
    return {(f.alias or name): f for name, f in cls.model_fields.items()
            if not name.endswith("__ext") and name != "fhir_comments"}


def child(cls: type[Any], element: str) -> tuple[bool, type[Any] | None, bool]:
    """(exists, model of the element or None for primitives, repeats) of ``element`` in ``cls``."""
    field = _fields(cls).get(element)  # type: ignore[arg-type]  # classes are hashable
    if field is None:
        return False, None, False
    return (True, *_unwrap(field.annotation))


def _unwrap(annotation: Any) -> tuple[type[Any] | None, bool]:
    repeats = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, typing.List):
            repeats, annotation = True, args[0]
        elif origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            annotation = args[0]
        elif origin is typing.Annotated:
            return None, repeats
        else:
            break
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        name = annotation.__name__
        return model(name[:-4] if name.endswith("Type") else name), repeats
    return None, repeats


def validate(resource: dict) -> dict:
    """Validate with the R4B model; return the JSON form the model serialises (canonical)."""
    cls = model(resource.get("resourceType", ""))
    if cls is None:
        raise InvalidResource(f"unknown resource type {resource.get('resourceType')!r}")
    try:
        obj = cls.model_validate(resource)
    except Exception as exc:  # pydantic ValidationError and fhir_core's own errors
        raise InvalidResource(f"{resource.get('resourceType')}/{resource.get('id')}: {exc}") from exc
    return obj.model_dump(mode="json", by_alias=True, exclude_none=True)


@functools.lru_cache(maxsize=None)
def summary_elements(resource_type: str) -> frozenset[str]:
    """Elements marked isSummary (for ``_summary=true``)."""
    cls = model(resource_type)
    if cls is None:
        return frozenset({"id", "meta"})
    return frozenset(cls.summary_elements_sequence()) | {"resourceType"}


@functools.lru_cache(maxsize=None)
def mandatory_elements(resource_type: str) -> frozenset[str]:
    """Elements with min cardinality 1 (kept by ``_elements``/``_summary=text``)."""
    cls = model(resource_type)
    if cls is None:
        return frozenset()
    return frozenset(f.alias or n for n, f in cls.model_fields.items() if f.is_required())
