"""How suite entries ended, and the outputs written from them: summary table, JSON, JUnit XML.

Shared by the local suite runner and the Slurm job array, which collect results differently
but report them the same way.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.exit_codes import DESCRIPTIONS, ExitCode
from orchestrator.report import junit
from orchestrator.suite.config import Suite

SUITE_FAILED = 1


@dataclass
class EntryResult:
    """How one entry ended."""

    name: str
    spec: str
    scenario: str
    exit_code: int
    meaning: str
    wall_s: float
    run_dir: str
    log: str
    device: str
    message: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def meaning_of(code: int) -> str:
    """The README's meaning of an orchestrator exit code (or a plain 'exit N')."""
    try:
        return DESCRIPTIONS[ExitCode(code)].split(":")[0].split(" (")[0]
    except ValueError:
        return f"exit {code}"


def summary_table(results: list[EntryResult]) -> str:
    """A plain-text table of every entry: name, device, exit code, meaning, wall time."""
    rows = [("entry", "device", "exit", "result", "wall")]
    rows += [(r.name, r.device, str(r.exit_code), r.meaning, f"{r.wall_s:.1f}s") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(not r.ok for r in results)
    lines.append(
        f"{len(results) - failed} of {len(results)} entries verified" + (f", {failed} failed" if failed else "")
    )
    return "\n".join(lines) + "\n"


def entry_report(result: EntryResult) -> dict[str, Any]:
    """The entry's ``report.json``, or a minimal one where the run left none (bad spec, killed)."""
    path = Path(result.run_dir) / "report.json"
    report: dict[str, Any] = {}
    if path.exists():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            report = {}
    if report.get("exit_code") != result.exit_code:
        # The suite's own verdict wins (e.g. it stopped an entry that ran past its timeout).
        report.update(exit_code=result.exit_code, message=result.message or result.meaning)
    report.setdefault("spec", result.spec)
    report.setdefault("run_dir", result.run_dir)
    report.setdefault("phases", [])
    return report


def junit_xml(suite_name: str, results: list[EntryResult]) -> ET.ElementTree:
    """The suite's JUnit XML: one ``<testsuite>`` per entry, built by ``orchestrator.report.junit``.

    A resume mismatch is a failure, any other non-zero exit an error; the testcase is named
    after the entry, and the suite's totals are on the root.
    """
    root = ET.Element("testsuites", name=suite_name)
    for result in results:
        element = junit.testsuite(entry_report(result))
        element.set("name", f"{suite_name}.{result.name}")
        case = element.find("testcase")
        if case is not None:
            case.set("name", result.name)
            case.set("time", f"{result.wall_s:.1f}")
        root.append(element)
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(e.get(key, "0")) for e in root)))
    root.set("time", f"{sum(r.wall_s for r in results):.1f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_outputs(suite: Suite, out: Path, results: list[EntryResult]) -> None:
    """``summary.json`` and ``junit.xml`` in ``out``."""
    summary = {
        "suite": suite.name,
        "source": str(suite.source),
        "entries": [r.__dict__ for r in results],
        "failed": [r.name for r in results if not r.ok],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    junit_xml(suite.name, results).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)


def finish(suite: Suite, out: Path, results: list[EntryResult]) -> int:
    """Writes the outputs, prints the table; returns 0 if every entry verified, else 1."""
    write_outputs(suite, out, results)
    print(summary_table(results), end="", flush=True)
    print(f"junit: {out / 'junit.xml'}", flush=True)
    failed = [r for r in results if not r.ok]
    if failed:
        print(
            f"error: {len(failed)} of {len(results)} entries failed: {', '.join(r.name for r in failed)}",
            file=sys.stderr,
        )
        return SUITE_FAILED
    return 0
