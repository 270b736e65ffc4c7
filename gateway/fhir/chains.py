"""Search parameters across resources: chains, reverse chains (``_has``), composites, ``_sort``.

Parsing only (the SQL is in sqlsearch.py). Every error names the parameter as the client sent
it. What may be chained or reverse-chained is read from the parameter table (params.PARAMS):
a reference parameter's ``targets`` say where it points, so a chain or a ``_has`` the table
cannot resolve is a 400, never a silently empty result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clinical import params as S
from .outcome import FhirError, invalid, not_supported
from .values import clause

MAX_DEPTH = 4  # parameters per chained key: patient._has:Condition:patient:code is 2
CHAIN_TARGETS = ("Patient",)  # stored types a forward chain can reach (R4 search 3.1.1.4.8)
SORTABLE = frozenset({"token", "string", "date", "quantity"})


class UnknownParameter(FhirError):
    """A chained key naming a parameter or type we do not know: ignored under
    ``Prefer: handling=lenient`` like any unknown parameter; a malformed one never is."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(400, "invalid", message, expression=parameter)


@dataclass(frozen=True)
class Chain:
    """``ref[:target].inner``: resources whose ``ref`` points at a ``target`` matching ``inner``."""

    ref: S.Param
    target: str
    inner: "Criterion"
    key: str  # the whole parameter as sent (errors name it)


@dataclass(frozen=True)
class Has:
    """``_has:source:ref:inner`` on ``target``: resources some ``source`` resource matching
    ``inner`` points at through its parameter ``ref`` (R4 search 3.1.1.4.9)."""

    source: str
    ref: S.Param
    target: str
    inner: "Criterion"
    key: str


Criterion = Any  # params.Clause | Chain | Has


@dataclass(frozen=True)
class SortKey:
    param: S.Param
    descending: bool


def is_chained(key: str) -> bool:
    return key == "_has" or key.startswith("_has:") or "." in key


def parse_key(kind: str, key: str, raw: str, *, full: str | None = None, depth: int = 1) -> Criterion:
    """One (possibly chained) parameter of a search on ``kind``; ``full`` is the key as sent."""
    full = full or key
    if depth > MAX_DEPTH:
        raise invalid(f"{full}: chains and _has nest at most {MAX_DEPTH} parameters deep", full)
    if key == "_has" or key.startswith("_has:"):
        return _has(kind, key, raw, full, depth)
    head, dot, rest = key.partition(".")
    if dot:
        return _chain(kind, head, rest, raw, full, depth)
    name, _, modifier = key.partition(":")
    param = S.PARAMS[kind].get(name)
    if param is None:
        raise UnknownParameter(f"Unknown search parameter {name!r} for {kind} in {full!r}", full)
    return clause(param, modifier or None, raw, full)


def _reference_param(kind: str, name: str, full: str) -> S.Param:
    param = S.PARAMS[kind].get(name)
    if param is None:
        raise UnknownParameter(f"Unknown search parameter {name!r} for {kind} in {full!r}", full)
    if param.type != "reference":
        raise invalid(f"{full}: {kind} {name} is a {param.type} parameter, not a reference, "
                      "so nothing can be chained from it", full)
    return param


def _chain(kind: str, head: str, rest: str, raw: str, full: str, depth: int) -> Chain:
    name, _, typed = head.partition(":")
    ref = _reference_param(kind, name, full)
    if typed and typed not in ref.targets:
        raise invalid(f"{full}: {kind} {name} refers to {' or '.join(ref.targets)}, not {typed}", full)
    if not typed and len(ref.targets) > 1:
        raise invalid(f"{full}: {kind} {name} may refer to {', '.join(ref.targets)}: name the "
                      f"type ({name}:<type>.<parameter>)", full)
    target = typed or ref.targets[0]
    if target not in CHAIN_TARGETS:
        raise not_supported(400, f"{full}: chaining from {kind} {name} to {target} is not "
                                 f"supported (chains reach {', '.join(CHAIN_TARGETS)})", full)
    if not rest:
        raise invalid(f"{full}: a chain needs a {target} parameter after '{head}.'", full)
    return Chain(ref, target, parse_key(target, rest, raw, full=full, depth=depth + 1), full)


def _has(kind: str, key: str, raw: str, full: str, depth: int) -> Has:
    parts = key.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise invalid(f"{full} is not _has:<type>:<reference parameter>:<parameter>", full)
    _, source, name, rest = parts
    if source not in S.PARAMS:
        raise UnknownParameter(f"{full}: {source!r} is not a resource type served here", full)
    if source not in S.STORED:
        raise not_supported(400, f"{full}: _has:{source} is not supported ({source} is built "
                                 "from the archive, not stored with the clinical data)", full)
    ref = _reference_param(source, name, full)
    if kind not in ref.targets:
        raise invalid(f"{full}: {source} {name} refers to {' or '.join(ref.targets)}, "
                      f"not {kind}", full)
    return Has(source, ref, kind, parse_key(source, rest, raw, full=full, depth=depth + 1), full)


# ---------------------------------------------------------------------- _sort
def add_sort(kind: str, keys: tuple, raw: str, modifier: str) -> tuple[SortKey, ...]:
    """``_sort=a,-b`` once (R4); or DSTU2's ``_sort:asc=a&_sort:desc=b``, one key per
    parameter, repeatable, as fhirclient writes its ``$asc``/``$desc``."""
    if not modifier:
        if keys:
            raise invalid("_sort is given twice: list the keys in one _sort, comma-separated",
                          "_sort")
        return parse_sort(kind, raw)
    if "," in raw or raw.startswith("-"):
        raise invalid(f"_sort:{modifier}={raw}: one parameter name per _sort:{modifier}",
                      f"_sort:{modifier}")
    added = parse_sort(kind, ("-" if modifier == "desc" else "") + raw)
    if any(k.param.name == added[0].param.name for k in keys):
        raise invalid(f"_sort names {raw} twice", "_sort")
    return keys + added


def sortable(param: S.Param) -> bool:
    return param.type in SORTABLE or (param.type == "reference" and param.targets == ("Patient",))


def parse_sort(kind: str, raw: str) -> tuple[SortKey, ...]:
    """``_sort=a,-b``: keys in order of significance, ``-`` descending (R4 search 3.1.1.5.3)."""
    keys: list[SortKey] = []
    for item in raw.split(","):
        item = item.strip()
        name = item[1:] if item.startswith("-") else item
        if not name:
            raise invalid(f"_sort={raw} has an empty key", "_sort")
        param = S.PARAMS[kind].get(name)
        if param is None:
            raise invalid(f"_sort={raw}: {name!r} is not a search parameter of {kind}", "_sort")
        if not sortable(param):
            raise not_supported(400, f"_sort={raw}: sorting on {kind} {name} ({param.type}) is "
                                     "not supported", "_sort")
        if any(k.param.name == name for k in keys):
            raise invalid(f"_sort={raw} names {name} twice", "_sort")
        keys.append(SortKey(param, item.startswith("-")))
    return tuple(keys)


def sort_names(kind: str) -> list[str]:
    """The ``_sort`` keys of a type (CapabilityStatement)."""
    return [name for name, p in S.PARAMS[kind].items() if sortable(p)]


def walk(criterion: Any) -> list[Any]:
    """The criterion and everything nested in it (checks over a whole request)."""
    if isinstance(criterion, (Chain, Has)):
        return [criterion] + walk(criterion.inner)
    return [criterion]
