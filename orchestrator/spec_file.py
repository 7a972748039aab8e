"""What the parent can tell about a spec file without importing torch: that it can possibly work."""

from __future__ import annotations

import ast
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
