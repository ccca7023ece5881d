"""The house reads bottom to top: every import of the package points down the layers of
docs/design.md, and no group of modules imports itself in a circle.

The structure is drawn from the source (every `import` and `from ... import`, at module level
or inside a function, `TYPE_CHECKING` blocks included), not from what happens to be loaded,
so a lazy import that runs back up fails here too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import modules of lower layers and of its own group; groups that
# share a layer do not import each other. A group is a module or a package (with everything
# under it), named by its dotted prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("unetzoo.errors",),
    ("unetzoo.fileio", "unetzoo.progress", "unetzoo.version"),
    ("unetzoo.task", "unetzoo.runtime", "unetzoo.viz"),
    ("unetzoo.nn",),
    ("unetzoo.models",),
    ("unetzoo.instances",),
    ("unetzoo.losses", "unetzoo.metrics", "unetzoo.schedules"),
    ("unetzoo.data",),
    ("unetzoo.config",),
    ("unetzoo.artefacts",),
    ("unetzoo.engine.distributed",),
    ("unetzoo.engine.inference",),
    ("unetzoo.engine.evaluate",),
    ("unetzoo.engine.export", "unetzoo.engine.plan"),
    ("unetzoo.engine.training",),
    ("unetzoo.engine.bench",),
    ("unetzoo.report", "unetzoo.serve"),
    ("unetzoo.api",),
    ("unetzoo.demo",),
    ("unetzoo.cli", "unetzoo.napari"),
    ("unetzoo.__main__",),
    ("unetzoo",),  # the facade: `unetzoo/__init__.py`, whose names load on first use
)
NAMESPACES = ("unetzoo.engine",)  # packages that only hold other groups


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "unetzoo").rglob("*.py"))}


def imported(name: str) -> set[str]:
    """The project's modules that `name` imports (the deepest module each statement names)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules() else stem
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules():
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def group_of(name: str) -> tuple[int, str]:
    """(layer index, group prefix) of a module."""
    best: tuple[int, str] | None = None
    for index, groups in enumerate(LAYERS):
        for group in groups:
            if (name == group or name.startswith(group + ".")) and (
                    best is None or len(group) > len(best[1])):
                best = (index, group)
    if best is None or (best[1] == "unetzoo" and name != "unetzoo"):
        raise AssertionError(f"{name} belongs to no layer: add it to LAYERS in {__file__}")
    return best


def test_every_module_has_a_layer() -> None:
    for name in modules():
        if name not in NAMESPACES:
            group_of(name)


def test_no_import_runs_back_up() -> None:
    wrong = []
    for name in modules():
        if name in NAMESPACES:
            continue
        layer, group = group_of(name)
        for target in sorted(imported(name)):
            if target in NAMESPACES:
                continue
            their_layer, their_group = group_of(target)
            if their_group != group and their_layer >= layer:
                wrong.append(f"{name} imports {target} (layer {their_layer} "
                             f"{their_group} >= layer {layer} {group})")
    assert not wrong, "\n".join(wrong)


def circles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    edges = {name: sorted(imported(name)) for name in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    for name in edges:
        if name not in index:
            visit(name)
    return found


def test_no_import_circles() -> None:
    assert not circles(), "\n".join(" <-> ".join(c) for c in circles())


@pytest.mark.parametrize("source, target", [
    ("unetzoo.models.unet", "unetzoo.engine.training.trainer"),
    ("unetzoo.data.io", "unetzoo.config"),
])
def test_the_check_sees_an_import_running_up(source: str, target: str) -> None:
    """The rule itself: these imports would run up, so `group_of` ranks them so."""
    assert group_of(source)[0] < group_of(target)[0]


def test_layers_in_docs_match() -> None:
    """docs/design.md draws the same layers (each group named there)."""
    design = (SRC.parent / "docs" / "design.md").read_text(encoding="utf-8")
    missing = [g for groups in LAYERS for g in groups
               if g not in ("unetzoo", "unetzoo.__main__")
               and g.removeprefix("unetzoo.").replace(".", "/") not in design]
    assert not missing, f"docs/design.md does not name: {missing}"


def test_layers_in_this_file_are_used() -> None:
    used = defaultdict(int)
    for name in modules():
        if name not in NAMESPACES:
            used[group_of(name)[1]] += 1
    unused = [g for groups in LAYERS for g in groups if not used[g]]
    assert not unused, f"groups without modules: {unused}"
