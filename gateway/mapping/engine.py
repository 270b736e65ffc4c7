"""The mapping engine: clinical rows in, validated FHIR resources out.

It knows no resource type: a rule (spec.py) says which values to take from which cells, when
to emit, and the body to fill. Missing values follow the rule's policy: ``skip`` the resource,
``omit`` the element that holds the value (its list item, or its key), or ``absent`` (drop the
top-level element and set dataAbsentReason). Every absent cell is counted in the report; every
resource passes the required-binding check and fhir.resources validation before it is kept.
"""
from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..clinical import resources
from . import link, transforms
from .spec import PLACEHOLDER, Rule, Spec, ValueSpec, When, load
from .transforms import Absent

log = logging.getLogger(__name__)
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
DAR_CODES = {"blank": ("unknown", "Unknown"), "unknown": ("asked-unknown", "Asked But Unknown"),
             "unmatched": ("unknown", "Unknown")}
DAR_ERROR = ("error", "Error")
Rows = list[tuple[int, dict]]


@dataclass
class MapReport:
    """What a mapping run made and what it had to leave out, counted."""

    resources: Counter = field(default_factory=Counter)
    cells: Counter = field(default_factory=Counter)      # (rule, column, kind) -> count
    rejected: list[str] = field(default_factory=list)     # resources that failed validation
    examples: dict = field(default_factory=dict)          # (rule, column, kind) -> first detail

    def note(self, rule: Rule, spec: ValueSpec, absent: Absent, patient_id: str) -> None:
        key = (rule.name, spec.column or spec.resolve, absent.kind)
        self.cells[key] += 1
        if absent.kind not in ("blank",) and key not in self.examples:
            self.examples[key] = f"{patient_id}: {absent.detail}"
            log.warning("%s (%s) %s: %s %s", rule.where, rule.name, key[1], absent.kind,
                        self.examples[key])

    @property
    def warnings(self) -> int:
        """Cells that held something unusable (blank cells are counted apart, not warned)."""
        return sum(n for (_r, _c, kind), n in self.cells.items() if kind != "blank")

    def summary(self) -> str:
        made = ", ".join(f"{n} {t}" for t, n in sorted(self.resources.items()))
        return (f"{made or 'no resources'}; {self.warnings} cell warning(s), "
                f"{len(self.rejected)} rejected resource(s)")


@dataclass(frozen=True)
class _Hole:
    """Where a missing value was: the element is omitted or marked data-absent by policy."""

    policy: str
    absent: Absent


class Engine:
    """Maps one patient's rows with every rule of the spec."""

    def __init__(self, spec: Spec | None = None) -> None:
        self.spec = spec or load()
        self.dar_system = self.spec.systems["data-absent-reason"]

    def map_patient(self, patient_id: str, patients: Rows, imaging: Rows,
                    links: link.Links | None = None,
                    report: MapReport | None = None) -> list[dict]:
        """Resources for one patient; rows are (row number, normalised row) pairs."""
        report = report if report is not None else MapReport()
        links = links or link.Links()
        out: list[dict] = []
        for rule in self.spec.rules:
            for number, row in (patients if rule.sheet == "patients" else imaging):
                out += self._apply(rule, patient_id, number, row, links, report)
        return out

    def _apply(self, rule: Rule, patient_id: str, number: int, row: dict, links: link.Links,
               report: MapReport) -> list[dict]:
        values = {}
        for name, spec in rule.values.items():
            value = self._value(spec, number, row, links)
            if isinstance(value, Absent):
                report.note(rule, spec, value, patient_id)
            values[name] = value
        if not all(self._passes(cond, values) for cond in rule.when):
            return []
        if any(isinstance(v, Absent) and rule.values[k].missing == "skip" for k, v in values.items()):
            return []
        counts: list[int | None] = [None]
        if rule.repeat:
            counts = list(range(1, int(values[rule.repeat]) + 1))
        made = []
        for n in counts:
            resource = self._build(rule, row, number, n, values)
            kept = self._check(resource, rule, report)
            if kept is not None:
                made.append(kept)
        return made

    @staticmethod
    def _passes(cond: When, values: dict) -> bool:
        value = values[cond.value]
        if isinstance(value, Absent):
            return False
        return value is True if cond.among is None else value in cond.among

    def _value(self, spec: ValueSpec, number: int, row: dict, links: link.Links) -> Any:
        value = (row.get(spec.column) if spec.column
                 else link.RESOLVERS[spec.resolve or ""](number, links))
        for name in spec.transform:
            if isinstance(value, Absent):
                break
            value = transforms.apply(name, value, dict(spec.args))
        if spec.default is not None and isinstance(value, Absent) and value.kind == "blank":
            value = spec.default
        if isinstance(value, Absent):
            return value
        if spec.table is not None:
            if value not in spec.table:
                return Absent("invalid", f"no mapping for {value!r}")
            value = copy.deepcopy(spec.table[value])
        if spec.each is not None:
            value = [_fill(spec.each, {"item": str(x)}, {}) for x in value or ()]
        return value

    def _build(self, rule: Rule, row: dict, number: int, n: int | None, values: dict) -> dict:
        env = {k: _cell_text(v) for k, v in row.items()}
        env.update(row=str(number), n="" if n is None else str(n))
        holes = {k: (_Hole(rule.values[k].missing, v) if isinstance(v, Absent) else v)
                 for k, v in values.items()}
        body = _fill(rule.body, env, holes)
        resource: dict[str, Any] = {"resourceType": rule.resource, "id": _fill(rule.id, env, holes)}
        dar = None
        for key, val in body.items():
            hole = _first_hole(val, "absent")
            if hole is not None:
                dar = dar or hole.absent
                continue
            cleaned, poisoned = _clean(val, in_item=False)
            if not poisoned and cleaned not in ({}, [], None):
                resource[key] = cleaned
        if dar is not None:
            code, display = DAR_CODES.get(dar.kind, DAR_ERROR)
            resource["dataAbsentReason"] = {"coding": [
                {"system": self.dar_system, "code": code, "display": display}]}
        return resource

    def _check(self, resource: dict, rule: Rule, report: MapReport) -> dict | None:
        """Required bindings, then fhir.resources; a failure drops the resource, counted."""
        where = f"{rule.where} ({rule.name}) {resource['resourceType']}/{resource.get('id')}"
        problem = None
        if not isinstance(resource.get("id"), str) or not FHIR_ID.match(resource["id"]):
            problem = f"id {resource.get('id')!r} is not a valid FHIR id"
        else:
            problem = self.binding_problem(resource)
        if problem is None:
            try:
                resource = resources.validate(resource)
            except resources.InvalidResource as exc:
                problem = str(exc)
        if problem is not None:
            report.rejected.append(f"{where}: {problem}")
            log.error("%s: %s", where, problem)
            return None
        report.resources[resource["resourceType"]] += 1
        return resource

    def binding_problem(self, resource: dict) -> str | None:
        """The first code outside a required binding (bindings.yaml), or None."""
        kind = resource["resourceType"]
        for path, allowed in self.spec.bindings.items():
            head, _, rest = path.partition(".")
            if head != kind:
                continue
            for value in _walk(resource, rest.split(".")):
                if str(value) not in allowed:
                    return f"{path} = {value!r} is outside its required binding"
        return None


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value == int(value):
        value = int(value)
    return str(value).strip()


def _fill(node: Any, env: dict, values: dict) -> Any:
    """Copy ``node`` with ``$value`` and ``{column}``/``{$value}`` placeholders filled in."""
    if isinstance(node, dict):
        return {k: _fill(v, env, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, env, values) for v in node]
    if not isinstance(node, str):
        return node
    if node.startswith("$") and node[1:] in values:
        return copy.deepcopy(values[node[1:]])
    holes = [values[name] for dollar, name in PLACEHOLDER.findall(node)
             if dollar and isinstance(values.get(name), _Hole)]
    if holes:
        return holes[0]
    return PLACEHOLDER.sub(lambda m: str(values[m[2]]) if m[1] else env.get(m[2], ""), node)


def _first_hole(node: Any, policy: str) -> _Hole | None:
    if isinstance(node, _Hole):
        return node if node.policy == policy else None
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        found = _first_hole(child, policy)
        if found is not None:
            return found
    return None


def _clean(node: Any, in_item: bool) -> tuple[Any, bool]:
    """Drop omitted values: a hole poisons its list item, else just its key; empties go too."""
    if isinstance(node, _Hole):
        return None, True
    if isinstance(node, list):
        items = []
        for item in node:
            cleaned, poisoned = _clean(item, in_item=True)
            if not poisoned and cleaned not in ({}, [], None):
                items.append(cleaned)
        return items, False
    if isinstance(node, dict):
        out = {}
        for key, val in node.items():
            cleaned, poisoned = _clean(val, in_item)
            if poisoned and in_item:
                return None, True
            if not poisoned and cleaned not in ({}, [], None):
                out[key] = cleaned
        return out, False
    return node, False


def _walk(node: Any, parts: list[str]) -> Iterable[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parts)
        return
    if not parts:
        yield node
        return
    if isinstance(node, dict) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])
