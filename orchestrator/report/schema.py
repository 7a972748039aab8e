"""The JSON Schema of ``report.json``, shipped in the package beside this module.

CI jobs that parse ``report.json`` check ``schema_version`` against the schema they were
written for; ``load_schema()`` gives the schema itself (for ``jsonschema``, which the
orchestrator does not need at run time: the tests validate every report they make).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

# Bumped only when a field is removed, renamed or changes meaning; new fields keep it.
SCHEMA_VERSION = 1
SCHEMA_FILE = "report.schema.json"


def schema_text() -> str:
    """The schema as shipped (JSON text)."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The schema of ``report.json`` (JSON Schema draft 2020-12) as a dict."""
    return json.loads(schema_text())
