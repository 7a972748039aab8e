"""What the parent can tell about a spec file without importing torch: that it can possibly work."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from orchestrator.arguments import UsageError


def check_spec_file(spec: Path) -> None:
    """Fails fast, without importing torch, on a spec that cannot possibly work."""
    if not spec.exists():
        raise UsageError(f"spec file not found: {spec}")
    if not spec.is_file():
        raise UsageError(f"spec is not a file: {spec}")
    try:
        tree = ast.parse(spec.read_text(encoding="utf-8"), filename=str(spec))
    except SyntaxError as err:
        raise UsageError(f"syntax error in spec {spec}, line {err.lineno}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read spec {spec}: {err}") from err
    if not any(isinstance(node, ast.ClassDef) for node in ast.walk(tree)):
        raise UsageError(f"spec {spec} defines no class, so no StopAndGoHarness subclass")


HARNESS_BASE = "StopAndGoHarness"
# How deep an import chain (spec -> base module -> its base module ...) is followed.
_MAX_DEPTH = 4


def check_harness_choice(spec: Path, harness: str | None) -> None:
    """Fails fast on a harness choice the workers would refuse, read from the source alone.

    The workers pick among the concrete ``StopAndGoHarness`` subclasses defined in the spec
    itself (``workers.spec_loader.pick_harness``). Here the same is decided from the syntax
    tree: bases are followed through the spec's classes and its ``from M import X``
    imports (found as files, never imported). Only certain verdicts raise; whatever cannot
    be resolved is left to the workers.
    """
    tree = _parse(spec)
    if tree is None:
        return
    classes = _classes(tree)
    if harness is not None:
        if harness not in classes:
            names = sorted(n for n in classes if _is_harness(spec, tree, n, 0) is not False)
            raise UsageError(f"no harness class {harness!r} in spec; it defines: {', '.join(names) or 'none'}")
        return
    found = sorted(n for n, node in classes.items() if _is_harness(spec, tree, n, 0) and not _is_abstract(node))
    if len(found) > 1:
        raise UsageError(f"spec defines {len(found)} harness classes ({', '.join(found)}); choose one with --harness")


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _is_abstract(node: ast.ClassDef) -> bool:
    """A class that declares an abstract method itself (the workers skip abstract classes)."""
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in item.decorator_list:
                name = deco.attr if isinstance(deco, ast.Attribute) else getattr(deco, "id", "")
                if name == "abstractmethod":
                    return True
    return False


def _is_harness(path: Path, tree: ast.Module, name: str, depth: int) -> bool | None:
    """Whether class ``name`` of ``tree`` derives from ``StopAndGoHarness`` (None: unknown)."""
    if depth > _MAX_DEPTH:
        return None
    node = _classes(tree).get(name)
    if node is None:
        return _imported_is_harness(path, tree, name, depth)
    answers = []
    for base in node.bases:
        base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if base_name is None:
            answers.append(None)
        elif base_name == HARNESS_BASE:
            return True
        elif isinstance(base, ast.Attribute):
            answers.append(None)  # module.Class: not followed
        elif base_name == name:
            answers.append(None)
        else:
            answers.append(_is_harness(path, tree, base_name, depth + 1))
    if any(answers):
        return True
    return False if all(a is False for a in answers) else None


def _imported_is_harness(path: Path, tree: ast.Module, name: str, depth: int) -> bool | None:
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            if (alias.asname or alias.name) != name:
                continue
            if alias.name == HARNESS_BASE:
                return True
            source = _module_file(path, node.module or "", node.level)
            source_tree = _parse(source) if source else None
            if source is None or source_tree is None:
                return None
            return _is_harness(source, source_tree, alias.name, depth + 1)
    return False if name in ("object", "ABC") else None


def _module_file(importer: Path, module: str, level: int) -> Path | None:
    """The file of ``module`` as imported from ``importer``, searched like the workers' path."""
    parts = module.split(".") if module else []
    if level:
        roots = [importer.resolve().parents[level - 1]]
    else:
        # The workers put the spec's directory first on sys.path; the cwd and the
        # interpreter's path follow.
        roots = [importer.resolve().parent, Path.cwd(), *(Path(p) for p in sys.path if p)]
        roots += list(importer.resolve().parents)  # a project root above the spec
        roots += _package_roots(parts[0]) if parts else []
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if parts and candidate.is_file():
                return candidate
    return None


def _package_roots(top: str) -> list[Path]:
    """Where an installed top-level package lives (an editable install maps it by a finder).

    ``find_spec`` of a top-level name locates it without running its ``__init__``.
    """
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if found is None:
        return []
    locations = list(found.submodule_search_locations or [])
    if locations:
        return [Path(location).parent for location in locations]
    return [Path(found.origin).parent] if found.origin else []
