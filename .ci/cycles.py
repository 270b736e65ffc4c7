"""Print every import cycle between the sibling packages and modules of ``gateway``.

For each package, its direct children (a subpackage stands for everything inside it) are
nodes and an import from anywhere in one child to anywhere in another is an edge; a
strongly connected component of more than one child is a cycle. Prints one line per
cycle and exits 1 if there is any; prints nothing and exits 0 otherwise (CI: .ci/run).
"""
from __future__ import annotations

import sys
from pathlib import Path

import grimp

ROOT = "gateway"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gateway


def child_of(package: str, module: str) -> str | None:
    """The direct child of ``package`` that contains ``module`` (None if outside it)."""
    if not module.startswith(package + "."):
        return None
    return package + "." + module[len(package) + 1:].split(".")[0]


def components(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges.get(target, ())))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(sorted(members))
    return found


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, list[str]]]:
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    out = []
    for package in packages:
        nodes = set(graph.find_children(package))
        edges: dict[str, set[str]] = {}
        for module in graph.find_descendants(package):
            source = child_of(package, module)
            for imported in graph.find_modules_directly_imported_by(module):
                target = child_of(package, imported)
                if source and target and target != source:
                    edges.setdefault(source, set()).add(target)
        out += [(package, members) for members in components(nodes, edges)]
    return out


def main() -> int:
    found = cycles(grimp.build_graph(ROOT))
    for package, members in found:
        print(f"cycle in {package}: {' <-> '.join(members)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
