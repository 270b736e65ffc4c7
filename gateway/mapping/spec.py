"""Load the mapping (``gateway/mapping/yaml/*.yaml``, or the folder MAPPINGS_DIR names) at
start-up; a broken mapping fails with its file and line. The language: docs/mapping.md.

Checked here, before any row is mapped: every column against the data dictionary, every
element against the fhir.resources models, every code system and extension alias against
``systems.yaml``, every transform, resolver and placeholder. Aliases are replaced by URIs so
the engine sees finished templates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources as package_files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..clinical import resources
from . import link, transforms

BUILTIN: Traversable = package_files.files(__package__) / "yaml"  # installed with the package
META_FILES = ("systems.yaml", "dictionary.yaml", "bindings.yaml", "imaging.yaml")
RULE_KEYS = frozenset({"name", "resource", "sheet", "id", "values", "when", "repeat", "body"})
VALUE_KEYS = frozenset({"column", "resolve", "transform", "map", "each", "missing", "default",
                        "range", "suffix", "length"})
MISSING = ("skip", "omit", "absent")
SPECIAL_VARS = frozenset({"row", "n"})
PLACEHOLDER = re.compile(r"\{(\$?)([A-Za-z_][A-Za-z0-9_]*)\}")


class SpecError(ValueError):
    """A mapping file is wrong; the message starts with ``file:line:``."""


class Node(dict):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    lines: dict


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: _Loader, node: yaml.MappingNode) -> Node:
    loader.flatten_mapping(node)
    out = Node()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct)


@dataclass(frozen=True)
class ValueSpec:
    name: str
    column: str | None
    resolve: str | None
    transform: tuple[str, ...]
    args: Mapping[str, Any]
    table: Mapping[Any, Any] | None
    each: Any
    missing: str
    default: Any
    where: str


@dataclass(frozen=True)
class When:
    value: str
    among: tuple | None  # None: the value must be true


@dataclass(frozen=True)
class Rule:
    name: str
    resource: str
    sheet: str
    id: str
    values: Mapping[str, ValueSpec]
    when: tuple[When, ...]
    repeat: str | None
    body: dict
    where: str


@dataclass(frozen=True)
class Spec:
    rules: tuple[Rule, ...]
    systems: Mapping[str, str]
    extensions: Mapping[str, str]
    columns: Mapping[str, frozenset[str]]
    bindings: Mapping[str, frozenset[str]]
    imaging: Mapping[str, Any]


def _read(path: Traversable) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise SpecError(f"{path}:{mark.line + 1 if mark else 0}: {exc.problem}") from exc
    except OSError as exc:
        raise SpecError(f"{path}:0: cannot read: {exc.strerror}") from exc


def load(directory: str | Path | None = None) -> Spec:
    """The validated mapping of ``directory`` (MAPPINGS_DIR: a folder holding the whole
    mapping), or the built-in one; the caller keeps it (the app, one import)."""
    root: Traversable = Path(directory) if directory else BUILTIN
    meta = {name: _read(root / name) or Node() for name in META_FILES}
    ctx = _Context(meta)
    rules: list[Rule] = []
    for path in sorted((p for p in root.iterdir() if p.name.endswith(".yaml")),
                       key=lambda p: p.name):
        if path.name not in META_FILES:
            rules += ctx.rule_file(path, _read(path) or Node())
    seen: dict[tuple[str, str], str] = {}
    for rule in rules:
        key = (rule.resource, rule.id)
        if key in seen:
            raise SpecError(f"{rule.where}: id {rule.id!r} already made by {seen[key]}")
        seen[key] = rule.where
    imaging = ctx.resolve_aliases(meta["imaging.yaml"].get("imaging", Node()), root / "imaging.yaml")
    for system_key in ("identifier_system", "modality_system"):
        imaging[system_key] = ctx.system(imaging.get(system_key), root / "imaging.yaml", 0)
    return Spec(tuple(rules), ctx.systems, ctx.extensions, ctx.columns, ctx.bindings, imaging)


class _Context:
    """What a rule is checked against, plus the per-file checks."""

    def __init__(self, meta: dict[str, Node]) -> None:
        systems_doc = meta["systems.yaml"]
        self.systems = dict(systems_doc.get("systems") or {})
        self.extensions = dict(systems_doc.get("extensions") or {})
        sheets = meta["dictionary.yaml"].get("sheets") or {}
        self.columns = {sheet: frozenset(cols or {}) for sheet, cols in sheets.items()}
        self.bindings = {path: frozenset(str(c) for c in codes)
                         for path, codes in (meta["bindings.yaml"] or {}).items()}

    # ------------------------------------------------------------------ files
    def rule_file(self, path: Traversable, doc: Node) -> list[Rule]:
        _only(doc, {"defaults", "rules"}, path)
        defaults = doc.get("defaults") or Node()
        _only(defaults, {"resource", "sheet", "body"}, path)
        items = doc.get("rules")
        if not isinstance(items, list) or not items:
            raise SpecError(f"{path}:{getattr(doc, 'line', 1)}: a mapping file needs a list of rules")
        names: set[str] = set()
        out = []
        for item in items:
            rule = self.rule(path, item, defaults)
            if rule.name in names:
                raise SpecError(f"{rule.where}: rule name {rule.name!r} repeats")
            names.add(rule.name)
            out.append(rule)
        return out

    def rule(self, path: Traversable, node: Node, defaults: Node) -> Rule:
        if not isinstance(node, Node):
            raise SpecError(f"{path}:0: a rule must be a mapping")
        where = f"{path}:{node.line}"
        _only(node, RULE_KEYS, path)
        resource: Any = node.get("resource", defaults.get("resource"))
        sheet: Any = node.get("sheet", defaults.get("sheet"))
        for key, value in (("name", node.get("name")), ("resource", resource), ("sheet", sheet),
                           ("id", node.get("id"))):
            if not isinstance(value, str) or not value:
                raise SpecError(f"{where}: rule needs {key!r}")
        model = resources.model(resource)
        if model is None or not resources.is_resource_type(resource):
            raise SpecError(f"{_at(path, node, 'resource')}: unknown resource type {resource!r}")
        if sheet not in self.columns:
            raise SpecError(f"{_at(path, node, 'sheet')}: unknown sheet {sheet!r} "
                            f"(dictionary.yaml has {', '.join(sorted(self.columns))})")
        values = {name: self.value(path, name, spec, sheet)
                  for name, spec in (node.get("values") or Node()).items()}
        when = tuple(self.when(path, node, item, values) for item in node.get("when") or ())
        repeat = node.get("repeat")
        if repeat is not None and repeat not in values:
            raise SpecError(f"{_at(path, node, 'repeat')}: repeat names no value {repeat!r}")
        if any(v.missing == "absent" for v in values.values()) and not resources.child(
                model, "dataAbsentReason")[0]:
            raise SpecError(f"{where}: missing: absent needs {resource}.dataAbsentReason, which R4 lacks")
        body = _merge(defaults.get("body") or Node(), node.get("body") or Node())
        self.check_strings(path, node.get("id"), sheet, values, node.lines.get("id", node.line))
        self.check_body(path, model, body, sheet, values)
        body = self.resolve_aliases(body, path)
        values = {k: self.finish_value(v, path) for k, v in values.items()}
        return Rule(node["name"], resource, sheet, node["id"], values, when, repeat, body, where)

    def value(self, path: Traversable, name: str, node: Any, sheet: str) -> ValueSpec:
        if not isinstance(node, Node):
            raise SpecError(f"{path}:0: value {name!r} must be a mapping")
        where = f"{path}:{node.line}"
        _only(node, VALUE_KEYS, path)
        column, resolve = node.get("column"), node.get("resolve")
        if bool(column) == bool(resolve):
            raise SpecError(f"{where}: value {name!r} needs exactly one of column / resolve")
        if column and column not in self.columns[sheet]:
            raise SpecError(f"{_at(path, node, 'column')}: unknown column {column!r} in sheet {sheet!r}")
        if resolve and resolve not in link.RESOLVERS:
            raise SpecError(f"{_at(path, node, 'resolve')}: unknown resolver {resolve!r}")
        chain = node.get("transform") or ()
        chain = (chain,) if isinstance(chain, str) else tuple(chain)
        args = {k: node[k] for k in ("range", "suffix", "length") if k in node}
        for t in chain:
            if t not in transforms.TRANSFORMS:
                raise SpecError(f"{_at(path, node, 'transform')}: unknown transform {t!r}")
        allowed = set().union(*(transforms.ARGUMENTS.get(t, frozenset()) for t in chain)) if chain else set()
        for key in args:
            if key not in allowed:
                raise SpecError(f"{_at(path, node, key)}: {key!r} is not an argument of {', '.join(chain) or 'no transform'}")
        if "range" in args and not (isinstance(args["range"], list) and len(args["range"]) == 2):
            raise SpecError(f"{_at(path, node, 'range')}: range must be [low, high]")
        missing = node.get("missing", "skip")
        if missing not in MISSING:
            raise SpecError(f"{_at(path, node, 'missing')}: missing must be one of {', '.join(MISSING)}")
        return ValueSpec(name, column, resolve, chain, args, node.get("map"), node.get("each"),
                         missing, node.get("default"), where)

    def finish_value(self, value: ValueSpec, path: Traversable) -> ValueSpec:
        table = None if value.table is None else {
            k: self.resolve_aliases(v, path) for k, v in value.table.items()}
        each = None if value.each is None else self.resolve_aliases(value.each, path)
        return ValueSpec(value.name, value.column, value.resolve, value.transform, dict(value.args),
                         table, each, value.missing, value.default, value.where)

    def when(self, path: Traversable, rule: Node, item: Any, values: dict) -> When:
        name: Any = item if isinstance(item, str) else (item or {}).get("value")
        among = None if isinstance(item, str) else tuple((item or {}).get("in") or ())
        if name not in values:
            raise SpecError(f"{_at(path, rule, 'when')}: when names no value {name!r}")
        return When(name, among)

    # ------------------------------------------------------------------- body
    def check_strings(self, path: Traversable, text: Any, sheet: str, values: dict, line: int,
                      extra: frozenset[str] = frozenset()) -> None:
        if not isinstance(text, str):
            return
        for dollar, name in PLACEHOLDER.findall(text):
            ok = name in values if dollar else (name in self.columns[sheet] or name in SPECIAL_VARS | extra)
            if not ok:
                kind = "value" if dollar else "column"
                raise SpecError(f"{path}:{line}: unknown {kind} {name!r} in {text!r}")
        if text.startswith("$") and text[1:] not in values:
            raise SpecError(f"{path}:{line}: unknown value {text!r}")

    def check_body(self, path: Traversable, cls: type, node: Any, sheet: str, values: dict,
                   extra: frozenset[str] = frozenset()) -> None:
        """Every key an element of ``cls``; placeholders name known columns and values."""
        if not isinstance(node, dict):
            raise SpecError(f"{path}:0: {cls.__name__} needs an object here")
        for key, val in node.items():
            line = node.lines.get(key, node.line) if isinstance(node, Node) else 0
            exists, sub, _repeats = resources.child(cls, key)
            if not exists:
                raise SpecError(f"{path}:{line}: unknown element {cls.__name__}.{key}")
            self._check_element(path, line, sub, f"{cls.__name__}.{key}", val, sheet, values, extra)

    def _check_element(self, path: Traversable, line: int, sub: type | None, name: str, val: Any,
                       sheet: str, values: dict, extra: frozenset[str]) -> None:
        if isinstance(val, str) and val.startswith("$") and val[1:] in values:
            spec = values[val[1:]]
            alternatives = list(spec.table.values()) if spec.table else []
            if spec.each is not None:
                alternatives = [[spec.each]]
                extra = extra | {"item"}
            for alt in alternatives:
                self._check_element(path, line, sub, name, alt, sheet, values, extra)
            return
        for item in (val if isinstance(val, list) else [val]):
            if isinstance(item, dict):
                if sub is None:
                    raise SpecError(f"{path}:{line}: {name} is a primitive, not an object")
                self.check_body(path, sub, item, sheet, values, extra)
            elif sub is not None and not (isinstance(item, str) and item.startswith("$")):
                raise SpecError(f"{path}:{line}: {name} needs an object, not {item!r}")
            else:
                self.check_strings(path, item, sheet, values, line, extra)

    def resolve_aliases(self, node: Any, path: Traversable) -> Any:
        """Plain data with system aliases and extension aliases replaced by their URIs."""
        if isinstance(node, list):
            return [self.resolve_aliases(x, path) for x in node]
        if not isinstance(node, dict):
            return node
        out = {}
        is_extension = any(k.startswith("value") or k == "extension" for k in node)
        for key, val in node.items():
            line = node.lines.get(key, 0) if isinstance(node, Node) else 0
            if key == "system" and isinstance(val, str):
                out[key] = self.system(val, path, line)
            elif key == "url" and is_extension and isinstance(val, str) and (
                    val in self.extensions or "://" in val):
                if val not in self.extensions and val not in self.extensions.values():
                    raise SpecError(f"{path}:{line}: unknown extension {val!r} (not in systems.yaml)")
                out[key] = self.extensions.get(val, val)
            else:
                out[key] = self.resolve_aliases(val, path)
        return out

    def system(self, alias: Any, path: Traversable, line: int) -> str:
        if alias in self.systems:
            return self.systems[alias]
        if alias in self.systems.values():
            return alias
        raise SpecError(f"{path}:{line}: unknown code system {alias!r} (not in systems.yaml)")


def _only(node: Any, allowed: set | frozenset, path: Traversable) -> None:
    if not isinstance(node, dict):
        raise SpecError(f"{path}:0: expected a mapping")
    for key in node:
        if key not in allowed:
            raise SpecError(f"{_at(path, node, key)}: unknown key {key!r} "
                            f"(expected {', '.join(sorted(allowed))})")


def _at(path: Traversable, node: Any, key: str) -> str:
    line = node.lines.get(key, node.line) if isinstance(node, Node) else 0
    return f"{path}:{line}"


def _merge(base: Any, over: Any) -> Any:
    """Deep-merge ``over`` into ``base`` (mappings merge, anything else replaces); keeps lines."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    out = Node(base)
    out.line = getattr(over, "line", getattr(base, "line", 0))
    out.lines = {**getattr(base, "lines", {}), **getattr(over, "lines", {})}
    for key, val in over.items():
        out[key] = _merge(base[key], val) if key in base else val
    return out
