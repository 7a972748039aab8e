"""report.json follows the JSON Schema shipped in the package, whatever kind of run wrote it.

The runs here are the session's shared ones (no run of its own): a verified default run, the
broken spec's mismatch, a zero-code plain PyTorch run and a stop phase that failed. Every
other report the session writes is checked at its end (``tests/conftest.py``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from orchestrator.exit_codes import ExitCode
from orchestrator.report.schema import SCHEMA_VERSION, load_schema, schema_text
from tests.conftest import REPO, ReportedRun, Run
from tests.schema_check import report_files, schema_problems
from tests.test_plain import exact_2  # noqa: F401 - the shared zero-code run (background lane)
from tests.test_run_side import numpy_checkpoint_run  # noqa: F401 - the shared failed-stop run


def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def test_the_schema_is_a_valid_draft_2020_12_schema_shipped_as_package_data() -> None:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"] == {
        "const": SCHEMA_VERSION,
        "description": "The version of this schema the report follows.",
    }
    # The file the wheel ships (tests/test_packaging.py checks it is in the wheel).
    assert schema_text() == (REPO / "orchestrator" / "report" / "report.schema.json").read_text(encoding="utf-8")


def test_every_kind_of_report_follows_the_schema(
    default_run: Run,
    broken_reported_run: ReportedRun,
    exact_2: Run,  # noqa: F811
    numpy_checkpoint_run: Run,  # noqa: F811
) -> None:
    kinds = {
        "verified": (default_run, 0),
        "mismatch": (broken_reported_run.run, 1),
        "zero-code": (exact_2, 0),
        "failed stop": (numpy_checkpoint_run, 3),
    }
    for kind, (run, code) in kinds.items():
        report = run.report
        assert report["exit_code"] == code, (kind, report["message"])
        assert report["schema_version"] == SCHEMA_VERSION
        errors = [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(report)]
        assert errors == [], kind
        assert schema_problems(report_files(run.run_dir)) == [], kind  # report.html beside it too
    failed = numpy_checkpoint_run.report
    assert failed["verdict"] is None and failed["diagnosis"] == []
    assert broken_reported_run.run.report["diagnosis"][0]["cause_id"] == "scheduler_not_restored"


def _errors(report: dict[str, Any]) -> list[str]:
    # A field that may be null ("oneOf") fails as a whole: its branches' errors say why.
    found = []
    pending = list(_validator().iter_errors(report))
    while pending:
        error = pending.pop()
        found.append(f"{error.json_path}: {error.message}")
        pending += error.context or []
    return found


def test_the_schema_rejects_what_a_ci_parser_would_trip_on(broken_reported_run: ReportedRun, tmp_path: Path) -> None:
    good = broken_reported_run.run.report
    cases: dict[str, tuple[Any, str]] = {}
    missing = copy.deepcopy(good)
    del missing["exit_code"]
    cases["a field left out"] = (missing, "'exit_code' is a required property")
    undocumented = copy.deepcopy(good) | {"surprise": 1}
    cases["a new top-level field not in the schema"] = (undocumented, "'surprise' was unexpected")
    wrong_type = copy.deepcopy(good)
    wrong_type["verdict"]["failures"] = "one string"
    cases["a list turned into a string"] = (wrong_type, "$.verdict.failures: 'one string' is not of type 'array'")
    other_version = copy.deepcopy(good) | {"schema_version": SCHEMA_VERSION + 1}
    cases["another schema version"] = (other_version, "$.schema_version")
    no_fix = copy.deepcopy(good)
    del no_fix["diagnosis"][0]["fix"]
    cases["a diagnosis without its fix"] = (no_fix, "'fix' is a required property")
    for case, (report, expected) in cases.items():
        errors = _errors(report)
        assert any(expected in e for e in errors), (case, errors)
    # The session check reads files: a report that breaks the schema is named with its path.
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps(missing))
    try:
        problems = schema_problems(report_files(tmp_path))
    finally:
        bad.unlink()  # the session's own check would (rightly) fail on it
    assert len(problems) == 1 and problems[0].startswith(f"{bad}: $: 'exit_code' is a required property")


@pytest.mark.parametrize("field", ["exit_code", "message", "verdict", "diagnosis", "schema_version"])
def test_the_fields_ci_reads_are_required(field: str) -> None:
    assert field in load_schema()["required"]


def test_the_schema_knows_every_exit_code() -> None:
    # A new exit code needs its line in the schema (and the docs' exit-code table).
    assert sorted(load_schema()["properties"]["exit_code"]["enum"]) == sorted(int(code) for code in ExitCode)
