"""Every ``report.json`` a test session wrote follows the shipped schema, with ``report.html`` beside it.

The session's runs are the suite's kinds of run (verified, mismatch, nondeterministic,
failed phases, zero-code, suites, self-tests, Slurm): checking their files after the fact
covers them all without a run of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jsonschema import Draft202012Validator

from orchestrator.report.schema import load_schema


def report_files(root: Path) -> list[Path]:
    """Every ``report.json`` under ``root`` (checkpoints and logs are skipped by name, not read)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("checkpoints", "logs", "results", "trajectory")]
        found += [Path(folder) / name for name in files if name == "report.json"]
    return sorted(found)


def schema_problems(paths: list[Path]) -> list[str]:
    """One line per report that breaks the schema (or a run dir's report without its report.html)."""
    validator = Draft202012Validator(load_schema())
    problems = []
    for path in paths:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            problems.append(f"{path}: unreadable: {err}")
            continue
        for error in sorted(validator.iter_errors(report), key=lambda e: e.json_path)[:3]:
            problems.append(f"{path}: {error.json_path}: {error.message[:300]}")
        if (path.parent / "run.json").exists() and not (path.parent / "report.html").exists():
            problems.append(f"{path}: no report.html beside it")
    return problems
