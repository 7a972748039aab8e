"""The layout rules of issue 11, read from the source with ``ast`` (nothing is imported).

- no import circle among the modules of ``orchestrator/`` and ``workers/`` (function-level
  imports count: a circle hidden in a function is still a circle);
- no circle between ``orchestrator``'s subpackages either (run, judge, report, slurm, suite);
- no module over 450 lines; at most 8 modules at ``orchestrator/``'s top level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "workers")
MAX_LINES = 450
MAX_TOP_LEVEL = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (resolved to known modules)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            # ``from pkg import mod`` names a module; ``from mod import func`` names its module.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def ignoring_parents(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    # Importing ``a.b`` runs ``a/__init__.py`` first; that is no circle of the code's making.
    return {n: {t for t in targets if not n.startswith(t + ".")} for n, targets in edges.items()}


def test_no_import_circle_between_modules() -> None:
    cycle = find_cycle(ignoring_parents(graph()))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_circle_between_orchestrator_subpackages() -> None:
    def package(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else "orchestrator"

    edges: dict[str, set[str]] = {}
    for name, targets in graph().items():
        if not name.startswith("orchestrator."):
            continue
        src = package(name)
        for target in targets:
            dst = package(target)
            if target.startswith("orchestrator") and dst != src and dst != "orchestrator":
                edges.setdefault(src, set()).add(dst)
    cycle = find_cycle(edges)
    assert cycle is None, "subpackage circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_the_line_limit(package: str) -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / package).rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_orchestrator_top_level_stays_small() -> None:
    top = sorted(p.name for p in (REPO / "orchestrator").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} top-level modules: {top}"
