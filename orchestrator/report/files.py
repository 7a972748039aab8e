"""Writing the report files of a run: ``RUN_DIR/report.html`` always, ``--html-report``,
``--png-report`` and ``--junit-xml`` when asked for.

The HTML page is plain text work (inline SVG, no matplotlib): a few tenths of a second,
cheap enough for every run. The other writers are imported only when asked for: the PNG
needs matplotlib (and numpy), which a plain run must not import.
"""

from __future__ import annotations

import os
import shutil
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
    run_html: Path | None = None,
    html: Path | None = None,
    png: Path | None = None,
    junit: Path | None = None,
) -> tuple[list[str], list[str]]:
    """Writes the run's ``report.html`` and the files asked for; returns the lines to show and the errors.

    ``run_html`` is the page every run writes in its run dir; ``html`` (``--html-report``)
    gets a copy of it. A file that cannot be written does not stop the others, nor change
    the run's verdict.
    """
    done: list[str] = []
    errors: list[str] = []
    written: Path | None = None
    for target in (run_html, html):  # the run dir's page first, then its copy
        if target is None:
            continue
        try:
            if written is None:
                written = _write_html(report, target)
                done.append(f"html report: {written}")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(written, target)
                done.append(f"html report: {target} (a copy)")
        except OSError as err:
            flag = "--html-report " if target == html else ""
            errors.append(f"cannot write {flag}{target}: {err.strerror or err}")
        except Exception as err:  # noqa: BLE001 - a page that fails to render must not change the verdict
            errors.append(f"{target} not written: internal error: {type(err).__name__}: {err}")
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


def _write_html(report: dict[str, Any], target: Path) -> Path:
    from orchestrator.report.html import write_html_report

    return write_html_report(report, target)
