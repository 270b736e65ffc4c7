"""A :class:`~gateway.archive.scope.Scope` as SQL: the WHERE every statement of a scoped view
carries, so the narrowing happens inside the one statement that answers (totals, paging and
"not found" are those of the narrowed archive; gateway/archive/scope.py).

Conditions use expanding bind parameters (``scope_patients``, ``scope_collections``,
``scope_hidden``): a statement is built once per *shape* of scope and reused with any lists.
A study's collection is NULL when unknown: such a study is outside every collection
allow-list and inside every "not hidden" test (:meth:`Scope.sees_collection`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select
from sqlalchemy.sql import ColumnElement

from ..scope import Scope
from .schema import patients, studies


@dataclass(frozen=True)
class Shape:
    """Which parts of a scope restrict: the key of a prepared statement."""

    patients: bool = False
    collections: bool = False
    hidden: bool = False

    @classmethod
    def of(cls, scope: Scope) -> Shape:
        return cls(scope.patients is not None, scope.collections is not None, bool(scope.hidden))

    @property
    def any(self) -> bool:
        return self.patients or self.collections or self.hidden

    @property
    def by_collection(self) -> bool:
        return self.collections or self.hidden


ALL_SHAPES = tuple(Shape(p, c, h) for p in (False, True) for c in (False, True)
                   for h in (False, True))


def params(scope: Scope) -> dict[str, Any]:
    """The bind values of ``scope`` (sorted: a stable statement cache key on every driver)."""
    out: dict[str, Any] = {}
    if scope.patients is not None:
        out["scope_patients"] = sorted(scope.patients)
    if scope.collections is not None:
        out["scope_collections"] = sorted(scope.collections)
    if scope.hidden:
        out["scope_hidden"] = sorted(scope.hidden)
    return out


def collection_condition(shape: Shape, table: Any = studies) -> list[ColumnElement[bool]]:
    """Conditions on a studies row (``table``, an alias in subqueries)."""
    conds: list[ColumnElement[bool]] = []
    if shape.collections:
        conds.append(table.c.collection.in_(bindparam("scope_collections", expanding=True)))
    if shape.hidden:
        conds.append(or_(table.c.collection.is_(None),
                         table.c.collection.not_in(bindparam("scope_hidden", expanding=True))))
    return conds


def patient_condition(shape: Shape) -> list[ColumnElement[bool]]:
    if not shape.patients:
        return []
    return [patients.c.patient_id.in_(bindparam("scope_patients", expanding=True))]


def study_conditions(shape: Shape) -> list[ColumnElement[bool]]:
    """For statements that join studies and patients."""
    return patient_condition(shape) + collection_condition(shape)


def patient_level_conditions(shape: Shape) -> list[ColumnElement[bool]]:
    """For statements over patients alone: a patient is visible when one of its studies is."""
    conds = patient_condition(shape)
    if shape.by_collection:
        seen = studies.alias("scope_studies")
        conds.append(exists().where(and_(seen.c.patient_pk == patients.c.pk,
                                         *collection_condition(shape, seen))))
    return conds


def patient_counts(shape: Shape) -> dict[str, ColumnElement]:
    """The patient-level counts of the visible studies only (PS3.4 C.6.1.1.2: the numbers of
    related studies, series and instances as the caller's archive holds them)."""
    seen = studies.alias("count_studies")
    where = and_(seen.c.patient_pk == patients.c.pk, *collection_condition(shape, seen))
    return {
        "num_studies": select(func.count()).where(where).scalar_subquery(),
        "num_series": select(func.coalesce(func.sum(seen.c.num_series), 0)).where(where)
        .scalar_subquery(),
        "num_instances": select(func.coalesce(func.sum(seen.c.num_instances), 0)).where(where)
        .scalar_subquery(),
    }
