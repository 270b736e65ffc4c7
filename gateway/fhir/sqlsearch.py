"""SQL of the cross-resource criteria (chains, ``_has``), composites, text search and ``_sort``.

Everything becomes correlated ``EXISTS`` subqueries and ORDER BY terms inside the one SELECT of
a search (repository.py for stored types, studies.py for ImagingStudy), so a search stays one
statement whatever it joins: no per-row round trips. Aliases and bind names come from the same
``_Binds`` so nested subqueries never collide. Plain SQL that SQLite (>= 3.30, NULLS LAST) and
PostgreSQL both run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import chains as C
from . import repository as R
from . import search as S


@dataclass(frozen=True)
class Owner:
    """The row a criterion is about, as SQL expressions."""

    id: str             # its logical id
    patient: str        # the id of the Patient it belongs to
    pk: str | None      # its fhir_resources.pk (None: not a stored resource)


def stored(alias: str) -> Owner:
    return Owner(f"{alias}.id", f"{alias}.patient_id", f"{alias}.pk")


def handles(criterion: Any) -> bool:
    """Whether ``criterion`` is one of ours rather than a plain single-parameter clause."""
    return not isinstance(criterion, S.Clause) or criterion.param.type in ("composite", "text")


def criterion_sql(criterion: Any, bind: Any, owner: Owner) -> str:
    if isinstance(criterion, C.Chain):
        return _chain_sql(criterion, bind, owner)
    if isinstance(criterion, C.Has):
        return _has_sql(criterion, bind, owner)
    if owner.pk is None:  # parsing never builds one of these for ImagingStudy
        raise ValueError(f"{criterion.param.name} on a resource that is not stored")
    if criterion.param.type == "composite":
        return _composite_sql(criterion, bind, owner.pk)
    return _text_sql(criterion, bind, owner.pk)


def _chain_sql(chain: C.Chain, bind: Any, owner: Owner) -> str:
    """A reference to Patient is the patient compartment (``patient_id``) on every type."""
    a = bind.alias("c")
    return (f"EXISTS (SELECT 1 FROM fhir_resources {a} WHERE {a}.type = {bind(chain.target)} "
            f"AND {a}.id = {owner.patient} AND {R._clause_sql(chain.inner, bind, a)})")


def _has_sql(has: C.Has, bind: Any, owner: Owner) -> str:
    a = bind.alias("h")
    inner = R._clause_sql(has.inner, bind, a)
    if has.ref.targets == ("Patient",):
        return (f"EXISTS (SELECT 1 FROM fhir_resources {a} WHERE {a}.type = {bind(has.source)} "
                f"AND {a}.patient_id = {owner.id} AND {inner})")
    x = bind.alias("x")  # any other reference is an index row: system = type, value = id
    return (f"EXISTS (SELECT 1 FROM fhir_index {x} JOIN fhir_resources {a} ON {a}.pk = {x}.res_pk "
            f"WHERE {x}.param = {bind(has.ref.name)} AND {x}.value = {owner.id} "
            f"AND {x}.system = {bind(has.target)} AND {a}.type = {bind(has.source)} AND {inner})")


def _composite_sql(clause: S.Clause, bind: Any, pk: str) -> str:
    """Alternatives ORed; within one, every component matches the same resource. Our composites
    (code-value-*) pair elements that occur once per Observation, so this is exact."""
    alternatives = []
    for value in clause.values:
        parts = [f"EXISTS (SELECT 1 FROM fhir_index i WHERE i.res_pk = {pk} AND i.param = "
                 f"{bind(part.name)} AND ({R._value_sql(part.type, None, v, bind)}))"
                 for part, v in zip(clause.param.components, value)]
        alternatives.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def _text_sql(clause: S.Clause, bind: Any, pk: str) -> str:
    """Each alternative is a phrase found anywhere in the normalised text."""
    likes = " OR ".join(f"t.value LIKE {bind('%' + _escape(v) + '%')} ESCAPE '\\'"
                        for v in clause.values)
    return (f"EXISTS (SELECT 1 FROM fhir_text t WHERE t.res_pk = {pk} AND t.param = "
            f"{bind(clause.param.name)} AND ({likes}))")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def order_sql(keys: tuple, bind: Any, alias: str) -> str:
    """ORDER BY of a stored-type search: the keys, then storage order (a stable tie-break).
    Several values (codings, repeats): ascending sorts by the lowest, descending by the highest;
    a resource without a value sorts last either way."""
    terms = [f"{_sort_expr(k, bind, alias)} {'DESC' if k.descending else 'ASC'} NULLS LAST"
             for k in keys]
    return ", ".join(terms + [f"{alias}.pk"])


def _sort_expr(key: C.SortKey, bind: Any, alias: str) -> str:
    param = key.param
    if param.name == "_id":
        return f"{alias}.id"
    if param.type == "reference":
        return f"{alias}.patient_id"
    column = {"token": "value", "string": "value", "quantity": "num",
              "date": "hi" if key.descending else "lo"}[param.type]
    return (f"(SELECT {'MAX' if key.descending else 'MIN'}(i.{column}) FROM fhir_index i "
            f"WHERE i.res_pk = {alias}.pk AND i.param = {bind(param.name)})")
