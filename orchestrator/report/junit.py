"""``--junit-xml``: the verdict as JUnit XML, the format CI servers show as test results.

Each run (one spec in one scenario: kill signal, workers, reference or not) is one
``<testsuite>`` holding one ``<testcase>``. A resume mismatch is a ``<failure>`` whose
message names the metric and its first divergent step; any other failure (a phase that
crashed, a timeout, a bad spec) is an ``<error>``. The phases' logs are the testcase's
``<system-out>``. The layout follows the Ant JUnit schema that Jenkins, GitLab and
GitHub test reporters read.
"""

from __future__ import annotations

import re
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrator.exit_codes import ExitCode
from orchestrator.report.run_data import (
    collapse_ranks,
    divergence_sentence,
    first_divergences,
    metric_rows,
    plain_table,
)

# The tail of each phase's log that goes into <system-out>; CI pages choke on more.
LOG_TAIL_BYTES = 64 * 1024

# Differences listed in a failure's text; report.json has them all.
MAX_DIFFERENCES = 10

# Characters XML 1.0 cannot hold (worker output may carry terminal escapes).
_INVALID_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("", text)


def scenario_name(report: dict[str, Any]) -> str:
    """The testcase name: the harness and the scenario it ran in."""
    parts = [
        str(report.get("kill_signal") or "no kill"),
        f"nproc={report.get('nproc_per_node')}",
    ]
    if report.get("reference") is False:
        parts.append("no-reference")
    return f"{report.get('harness') or 'harness'}[{', '.join(parts)}]"


def failure_text(report: dict[str, Any]) -> tuple[str, str]:
    """The failure's one-line message and its full text (metric table, differences)."""
    rows = metric_rows(report)
    first = first_divergences(rows)
    message = divergence_sentence(first[0]) if first else str(report.get("message", ""))
    lines = [str(report.get("message", ""))]
    diagnosis = report.get("diagnosis") or []
    if diagnosis:  # root cause first, as the terminal shows it
        root = diagnosis[0]
        lines += ["", f"root cause: {root['detail']}", f"  cause: {root['cause']}", f"  fix:   {root['fix']}"]
    if first:
        lines += ["", "first divergent step of each metric:"] + [f"  {divergence_sentence(r)}" for r in first]
    if rows:
        lines += ["", plain_table(collapse_ranks(rows))]
    failures = (report.get("verdict") or {}).get("failures") or []
    if failures:
        lines += ["", "differences:"] + [f"  - {f}" for f in failures[:MAX_DIFFERENCES]]
        if len(failures) > MAX_DIFFERENCES:
            lines.append(f"  ... and {len(failures) - MAX_DIFFERENCES} more in report.json")
    lines += ["", f"run dir: {report.get('run_dir')}"]
    return message, "\n".join(lines)


def _logs(report: dict[str, Any]) -> str:
    chunks = []
    for phase in report.get("phases", []):
        path = Path(phase.get("log") or "")
        header = f"===== {phase['name']}: {phase.get('outcome')} ({path}) ====="
        try:
            data = path.read_bytes() if path.is_file() else b""
        except OSError as err:
            data = f"(cannot read the log: {err})".encode()
        if len(data) > LOG_TAIL_BYTES:
            data = b"(... earlier output cut; the whole log is in the run dir)\n" + data[-LOG_TAIL_BYTES:]
        chunks.append(header + "\n" + data.decode("utf-8", errors="replace"))
    return _clean("\n".join(chunks))


def _error_type(code: int) -> str:
    if code == ExitCode.MISMATCH:
        return "ResumeMismatch"
    try:
        name = ExitCode(code).name
    except ValueError:
        return "Error"
    return "".join(word.capitalize() for word in name.split("_"))


def testsuite(report: dict[str, Any]) -> ET.Element:
    """The ``<testsuite>`` of one run."""
    code = int(report.get("exit_code", ExitCode.INTERNAL_ERROR))
    wall = sum(float(p.get("wall_s") or 0.0) for p in report.get("phases", []))
    spec = Path(str(report.get("spec") or "spec"))
    suite = ET.Element(
        "testsuite",
        {
            "name": f"stop-and-go.{spec.stem}",
            "tests": "1",
            "failures": "1" if code == ExitCode.MISMATCH else "0",
            "errors": "1" if code not in (ExitCode.VERIFIED, ExitCode.MISMATCH) else "0",
            "skipped": "0",
            "time": f"{wall:.3f}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname(),
        },
    )
    properties = ET.SubElement(suite, "properties")
    facts = {
        "spec": report.get("spec"),
        "run_dir": report.get("run_dir"),
        "exit_code": code,
        "kill_signal": report.get("kill_signal"),
        "resume_step": (report.get("sentinel") or {}).get("step"),
        "sentinel_to_all_dead_s": report.get("sentinel_to_all_dead_s"),
    }
    for name, value in facts.items():
        if value is not None:
            ET.SubElement(properties, "property", {"name": name, "value": _clean(str(value))})
    case = ET.SubElement(
        suite,
        "testcase",
        {"classname": f"stop_and_go.{spec.stem}", "name": scenario_name(report), "time": f"{wall:.3f}"},
    )
    if code != ExitCode.VERIFIED:
        message, text = failure_text(report)
        tag = "failure" if code == ExitCode.MISMATCH else "error"
        element = ET.SubElement(case, tag, {"message": _clean(message), "type": _error_type(code)})
        element.text = _clean(text)
    ET.SubElement(case, "system-out").text = _logs(report)
    return suite


def junit_xml(reports: list[dict[str, Any]]) -> str:
    """A JUnit XML document with one testsuite (and testcase) per run report."""
    root = ET.Element("testsuites", {"name": "stop-and-go"})
    suites = [testsuite(r) for r in reports]
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in suites):.3f}")
    root.extend(suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit_xml(reports: list[dict[str, Any]], path: str | Path) -> Path:
    """Writes ``junit_xml(reports)`` to ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(junit_xml(reports), encoding="utf-8")
    return target
