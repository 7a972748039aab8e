"""Loading a spec file and picking its harness class."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

from workers.harness import StopAndGoHarness


class SpecError(Exception):
    """The spec cannot be used: missing, broken, or without exactly one harness."""


def load_spec_module(path: str | Path) -> ModuleType:
    """Imports the spec file as a module; its directory goes first on ``sys.path``."""
    spec_path = Path(path).resolve()
    if not spec_path.is_file():
        raise SpecError(f"spec file not found: {path}")
    module_name = f"stop_and_go_spec_{spec_path.stem}"
    import_spec = importlib.util.spec_from_file_location(module_name, spec_path)
    if import_spec is None or import_spec.loader is None:
        raise SpecError(f"cannot import spec {path}: not a Python file")
    module = importlib.util.module_from_spec(import_spec)
    sys.path.insert(0, str(spec_path.parent))
    sys.modules[module_name] = module
    try:
        import_spec.loader.exec_module(module)
    except SyntaxError as err:
        raise SpecError(f"syntax error in spec {path}, line {err.lineno}: {err.msg}") from err
    except Exception as err:
        raise SpecError(f"spec {path} failed to import: {type(err).__name__}: {err}") from err
    return module


def harness_classes(module: ModuleType) -> list[type[StopAndGoHarness]]:
    """The concrete ``StopAndGoHarness`` subclasses defined in ``module`` itself."""
    found = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, StopAndGoHarness) and obj.__module__ == module.__name__ and not inspect.isabstract(obj):
            found.append(obj)
    return found


def pick_harness(module: ModuleType, name: str | None) -> type[StopAndGoHarness]:
    """The harness class named ``name``, or the only one in the spec."""
    classes = harness_classes(module)
    names = sorted(c.__name__ for c in classes)
    if name is not None:
        for cls in classes:
            if cls.__name__ == name:
                return cls
        raise SpecError(f"no harness class {name!r} in spec; it defines: {', '.join(names) or 'none'}")
    if not classes:
        raise SpecError("spec defines no StopAndGoHarness subclass")
    if len(classes) > 1:
        raise SpecError(f"spec defines {len(classes)} harness classes ({', '.join(names)}); choose one with --harness")
    return classes[0]
