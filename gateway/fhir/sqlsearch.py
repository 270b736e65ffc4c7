"""The SQL of a search: one SELECT per search plan over the clinical store's tables (gateway/
clinical/schema.py), run by the repository; cross-resource criteria (chains, ``_has``),
composites, text search and ``_sort`` included.

Everything becomes correlated ``EXISTS`` subqueries and ORDER BY terms inside the one SELECT of
a search (:func:`compile_search` for stored types, studies.py for ImagingStudy), so a search
stays one statement whatever it joins: no per-row round trips. Aliases and bind names come from the same
``_Binds`` so nested subqueries never collide. Plain SQL that SQLite (>= 3.30, NULLS LAST) and
PostgreSQL both run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clinical import params as P
from ..clinical.repository import CompiledSearch
from . import chains as C
from .search import SearchRequest


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
    return not isinstance(criterion, P.Clause) or criterion.param.type in ("composite", "text")


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
            f"AND {a}.id = {owner.patient} AND {_clause_sql(chain.inner, bind, a)})")


def _has_sql(has: C.Has, bind: Any, owner: Owner) -> str:
    a = bind.alias("h")
    inner = _clause_sql(has.inner, bind, a)
    if has.ref.targets == ("Patient",):
        return (f"EXISTS (SELECT 1 FROM fhir_resources {a} WHERE {a}.type = {bind(has.source)} "
                f"AND {a}.patient_id = {owner.id} AND {inner})")
    x = bind.alias("x")  # any other reference is an index row: system = type, value = id
    return (f"EXISTS (SELECT 1 FROM fhir_index {x} JOIN fhir_resources {a} ON {a}.pk = {x}.res_pk "
            f"WHERE {x}.param = {bind(has.ref.name)} AND {x}.value = {owner.id} "
            f"AND {x}.system = {bind(has.target)} AND {a}.type = {bind(has.source)} AND {inner})")


def _composite_sql(clause: P.Clause, bind: Any, pk: str) -> str:
    """Alternatives ORed; within one, every component matches the same resource. Our composites
    (code-value-*) pair elements that occur once per Observation, so this is exact."""
    alternatives = []
    for value in clause.values:
        parts = [f"EXISTS (SELECT 1 FROM fhir_index i WHERE i.res_pk = {pk} AND i.param = "
                 f"{bind(part.name)} AND ({_value_sql(part.type, None, v, bind)}))"
                 for part, v in zip(clause.param.components, value, strict=True)]
        alternatives.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def _text_sql(clause: P.Clause, bind: Any, pk: str) -> str:
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


# ------------------------------------------------------------- stored types
def compile_search(request: SearchRequest, bind_style: str) -> CompiledSearch:
    """The SQL of a search, built once per search plan: one page with the total as a
    window count, and a COUNT for ``_count=0`` or a page past the end."""
    bind = Binds(bind_style)
    where = where_sql(request.type, request.clauses, bind) + restriction_sql(request, bind)
    count_sql = f"SELECT COUNT(*) FROM fhir_resources r WHERE {where}"
    page_sql = None if request.count == 0 else (
        f"SELECT {_SELECT}, COUNT(*) OVER () FROM fhir_resources r WHERE {where} "
        f"ORDER BY {order_sql(request.sort, bind, 'r')} "
        f"LIMIT {int(request.count)} OFFSET {int(request.offset)}")
    return CompiledSearch(page_sql, count_sql, dict(bind), request.offset)


_SELECT = "r.type, r.id, r.body, r.patient_id"
DATE_SQL = {"eq": "(i.lo >= {lo} AND i.hi <= {hi})", "ne": "NOT (i.lo >= {lo} AND i.hi <= {hi})",
             "gt": "i.hi > {hi}", "sa": "i.lo > {hi}", "lt": "i.lo < {lo}", "eb": "i.hi < {lo}",
             "ge": "i.hi >= {lo}", "le": "i.lo <= {hi}"}


class Binds(dict):
    """Named bind parameters in the driver's style (sqlite3 ``:b0``, psycopg ``%(b0)s``)."""

    def __init__(self, style: str = "colon") -> None:
        super().__init__()
        self.style = style
        self.aliases = 0

    def alias(self, prefix: str) -> str:
        """A table alias no other part of the statement uses."""
        self.aliases += 1
        return f"{prefix}{self.aliases}"

    def __call__(self, value: Any) -> str:
        name = f"b{len(self)}"
        self[name] = value
        return f":{name}" if self.style == "colon" else f"%({name})s"


def where_sql(kind: str, clauses: list[Any], bind: Binds) -> str:
    """The WHERE clause of a search over ``fhir_resources r`` (clauses ANDed, values ORed)."""
    parts = [f"r.type = {bind(kind)}"] + [_clause_sql(c, bind) for c in clauses]
    return " AND ".join(parts)


def restriction_sql(request: SearchRequest, bind: Binds, r: str = "r") -> str:
    """The caller's limits (a patient compartment, granular-scope categories) ANDed to the
    search, so the page, the total and the links are those of the narrowed set."""
    parts = []
    if request.compartment is not None:
        parts.append(f"{r}.patient_id = {bind(request.compartment)}")
    if request.categories is not None:
        tokens = []
        for token in sorted(request.categories):
            system, bar, code = token.rpartition("|")
            tokens.append(f"(i.value = {bind(code)}" + (f" AND i.system = {bind(system)})"
                                                         if bar else ")"))
        parts.append(f"EXISTS (SELECT 1 FROM fhir_index i WHERE i.res_pk = {r}.pk AND "
                     f"i.param = {bind('category')} AND ({' OR '.join(tokens) or '1 = 0'}))")
    return "".join(" AND " + p for p in parts)


def _clause_sql(clause: Any, bind: Binds, r: str = "r") -> str:
    """One criterion on the resource row aliased ``r``."""
    if handles(clause):
        return criterion_sql(clause, bind, stored(r))
    param = clause.param
    if param.name == "_id":
        return f"{r}.id IN ({', '.join(bind(code) for _s, code in clause.values)})"
    if param.type == "reference" and param.targets == ("Patient",):  # the patient compartment
        if clause.modifier == "missing":
            return f"{r}.patient_id IS NULL" if clause.values[0] else f"{r}.patient_id IS NOT NULL"
        return f"{r}.patient_id IN ({', '.join(bind(v) for v in clause.values)})"
    has = f"EXISTS (SELECT 1 FROM fhir_index i WHERE i.res_pk = {r}.pk AND i.param = {bind(param.name)}"
    if clause.modifier == "missing":
        return f"NOT {has})" if clause.values[0] else f"{has})"
    alternatives = " OR ".join(_value_sql(param.type, clause.modifier, v, bind) for v in clause.values)
    matched = f"{has} AND ({alternatives}))"
    return f"NOT {matched}" if clause.modifier == "not" else matched


def _value_sql(kind: str, modifier: str | None, value: Any, bind: Binds) -> str:
    if kind == "token":
        system, code = value
        conds = [] if code is P.ANY else [f"i.value = {bind(code)}"]
        if system is not P.ANY:
            conds.append("i.system IS NULL" if system == "" else f"i.system = {bind(system)}")
        return " AND ".join(conds) or "1 = 1"
    if kind == "string":
        if modifier == "exact":
            return f"i.value = {bind(value)}"
        pattern = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = ("%" if modifier == "contains" else "") + pattern + "%"
        return f"i.value LIKE {bind(pattern)} ESCAPE '\\'"
    if kind == "reference":  # to a type other than Patient: system = type, value = id
        target, rid = value
        return f"i.value = {bind(rid)}" + (f" AND i.system = {bind(target)}" if target else "")
    if kind == "date":
        prefix, q_lo, q_hi = value
        return DATE_SQL[prefix].format(lo=bind(q_lo), hi=bind(q_hi))
    prefix, number, half, system, code = value
    conds = [_number_sql(prefix, number, half, bind)]
    if system:
        conds.append(f"i.system = {bind(system)}")
    if code:
        conds.append(f"i.value = {bind(code)}")
    return " AND ".join(conds)


def _number_sql(prefix: str, number: float, half: float, bind: Binds) -> str:
    if prefix in ("eq", "ne"):
        inside = f"(i.num >= {bind(number - half)} AND i.num < {bind(number + half)})"
        return inside if prefix == "eq" else f"NOT {inside}"
    if prefix == "ap":
        spread = abs(number) * 0.1
        return f"(i.num >= {bind(number - spread)} AND i.num <= {bind(number + spread)})"
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[prefix]
    return f"i.num {op} {bind(number)}"
