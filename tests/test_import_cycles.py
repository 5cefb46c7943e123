"""No import cycles in the package: every import of every module (at module level and inside functions; names
imported only under ``if TYPE_CHECKING:`` are not imports at run time) is an edge, and the graph must be acyclic.

The design card's folders are mapped as pyproject.toml installs them: lab4f/ → lab4f, drivers/ → lab4f.drivers,
calibration/ → lab4f.calibration, gui/ → lab4f.gui."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "lab4f": "lab4f",
    "drivers": "lab4f.drivers",
    "calibration": "lab4f.calibration",
    "gui": "lab4f.gui",
}


def package_modules() -> dict[str, Path]:
    """Module name → source file, for every module of the installed package."""
    found: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            if package == "lab4f" and parts and parts[0] in ("drivers", "calibration", "gui"):
                continue  # shadowed by the mapped top-level folder
            found[".".join([package, *parts])] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, anywhere in its source (an ``import a.b.c`` or ``from a.b import c``
    counts the deepest known module it names; a module's own package does not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {m: imported_modules(m, p, set(modules)) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _path_within(graph: dict[str, set[str]], component: list[str]) -> str:
    """One import loop through a component, for the message: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    loop = [start]
                    while v != start:
                        loop.append(v)
                        v = parents[v]
                    return " -> ".join([start, *reversed(loop[1:]), start])
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return " <-> ".join(component)


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert _path_within({"a": {"b"}, "b": {"a"}}, ["a", "b"]) == "a -> b -> a"


def test_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    """A function-level import is an edge; one under ``if TYPE_CHECKING:`` is not."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lab4f.b import X\n"
        "def f():\n    from lab4f.c import y\n    import lab4f.d.e\n",
        encoding="utf-8",
    )
    known = {"lab4f", "lab4f.b", "lab4f.c", "lab4f.d", "lab4f.m"}
    assert imported_modules("lab4f.m", src, known) == {"lab4f.c", "lab4f.d"}


def test_no_import_cycles_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "lab4f.bench.hybrid" in graph and "lab4f.gui.live" in graph
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_path_within(graph, c) for c in found)
