"""Writing the optional report files of a run: ``--html-report``, ``--png-report``, ``--junit-xml``.

The writers are imported only when asked for: the PNG needs matplotlib (and numpy),
which a plain run must not import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def output_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot take a report file (checked before the run), or None."""
    if path.is_dir():
        return f"{path} is a directory"
    parent = path.parent
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in {parent}"
    return None


def write_report_files(
    report: dict[str, Any],
    html: Path | None = None,
    png: Path | None = None,
    junit: Path | None = None,
) -> tuple[list[str], list[str]]:
    """Writes the files asked for; returns the lines to show and the errors (one line each).

    A file that cannot be written does not stop the others, nor change the run's verdict.
    """
    done: list[str] = []
    errors: list[str] = []
    if html is not None:
        try:
            from orchestrator.report.html import write_html_report

            done.append(f"html report: {write_html_report(report, html)}")
        except OSError as err:
            errors.append(f"cannot write --html-report {html}: {err.strerror or err}")
    if png is not None:
        try:
            from orchestrator.report.png import write_png_report

            done.append(f"png report: {write_png_report(report, png)}")
        except (OSError, ImportError) as err:
            errors.append(f"cannot write --png-report {png}: {err}")
    if junit is not None:
        try:
            from orchestrator.report.junit import write_junit_xml

            done.append(f"junit xml: {write_junit_xml([report], junit)}")
        except OSError as err:
            errors.append(f"cannot write --junit-xml {junit}: {err.strerror or err}")
    return done, errors
