"""Shared helpers: run the orchestrator as a real subprocess and check for leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests import background
from tests.background import REGISTRY, BackgroundRun, run_in_turn

REPO = Path(__file__).resolve().parent.parent
SPECS = Path(__file__).resolve().parent / "specs"
DEFAULT_SPEC = REPO / "harness_specs" / "tiny_lightning.py"
BROKEN_SPEC = REPO / "harness_specs" / "broken_scheduler.py"


@dataclass
class Run:
    """A finished orchestrator run."""

    returncode: int
    stdout: str
    stderr: str
    run_dir: Path
    wall_s: float | None = None  # the orchestrator's own wall time, where it ran in the background

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "report.json").read_text())


def orchestrator_command(spec: Path | str, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", str(spec), "--run-dir", str(run_dir), *extra]


def run_orchestrator(spec: Path | str, run_dir: Path, *extra: str, timeout: float = 240, cwd: Path = REPO) -> Run:
    """Runs ``python -m orchestrator`` to completion in a subprocess (in ``cwd``, the repo by default)."""
    proc = subprocess.run(
        orchestrator_command(spec, run_dir, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, run_dir)


def recorded_pids(run_dir: Path) -> set[int]:
    """Every pid the run recorded: agents and workers in the report, workers' own results."""
    pids: set[int] = set()
    report_path = run_dir / "report.json"
    if report_path.exists():
        for phase in json.loads(report_path.read_text())["phases"]:
            pids.add(phase["agent_pid"])
            pids.update(phase["pids"])
    for result in run_dir.glob("results/*/rank*.json"):
        pids.add(json.loads(result.read_text())["pid"])
    return pids


def live_processes_of_run(run_dir: Path) -> list[int]:
    """Pids of the run that still run: recorded pids, and any process carrying its run id."""
    alive = []
    for pid in recorded_pids(run_dir):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    run_json = run_dir / "run.json"
    if run_json.exists():
        run_id = json.loads(run_json.read_text())["run_id"]
        for proc in psutil.process_iter():
            try:
                # Each phase's processes carry "<run id>.<label>" (orchestrator.protocol.phase_tag).
                tag = proc.environ().get("STOP_AND_GO_RUN_ID") or ""
                if tag.split(".")[0] == run_id and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
            except psutil.Error:
                continue
    return sorted(set(alive))


def assert_nothing_left(run_dir: Path) -> None:
    assert recorded_pids(run_dir), "the run recorded no pids at all"
    assert live_processes_of_run(run_dir) == []


def one_line(text: str) -> str:
    """The single non-empty line of ``text`` (fails if there are more or a traceback)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(autouse=True)
def _no_inherited_run_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not inherit a run directory from an enclosing orchestrator run.
    for name in list(os.environ):
        if name.startswith("STOP_AND_GO_"):
            monkeypatch.delenv(name)


@dataclass
class ReportedRun:
    """The broken spec's run with every report file, shared by the HTML and JUnit tests."""

    run: Run
    html: Path
    png: Path
    junit: Path


@pytest.fixture(scope="session", autouse=True)
def _every_report_follows_the_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, every report.json it wrote is checked against the shipped schema.

    Set up before ``background_runs``, so torn down after the lane's runs have ended.
    """
    yield
    from tests.schema_check import report_files, schema_problems

    problems = schema_problems(report_files(tmp_path_factory.getbasetemp()))
    assert not problems, "report.json against orchestrator/report/report.schema.json:\n" + "\n".join(problems)


@pytest.fixture(scope="session", autouse=True)
def background_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, BackgroundRun]]:
    """Runs, from the first test, the registered background runs that a collected test reads, in turn.

    The lane takes them in the order the session needs them (the first test that reads
    each), so that the run read first is ready first, whatever the selection or order.
    """
    first_use: dict[str, int] = {}
    for index, item in enumerate(request.session.items):
        for name in getattr(item, "fixturenames", ()):
            first_use.setdefault(name, index)
    needed = sorted(
        (name for name, registered in REGISTRY.items() if registered.fixture in first_use),
        key=lambda name: first_use[REGISTRY[name].fixture],
    )
    runs = {name: BackgroundRun(REGISTRY[name], tmp_path_factory.mktemp(f"background_{name}")) for name in needed}
    lane = run_in_turn(list(runs.values()))
    yield runs
    for run in runs.values():
        run.stop()
    lane.join(timeout=10)


def background_run(request: pytest.FixtureRequest, name: str) -> BackgroundRun:
    """The background run registered as ``name`` (started by ``background_runs``)."""
    runs: dict[str, BackgroundRun] = request.getfixturevalue("background_runs")
    return runs[name]


def background_fixture(
    name: str,
    command: Callable[[Path], list[str]],
    read: Callable[[subprocess.CompletedProcess[str], BackgroundRun], Any],
    timeout: float = 300,
    *,
    idle: bool = False,
    env: dict[str, str] | None = None,
    cwd: Callable[[Path], Path] | None = None,
    when: bool = True,
) -> Any:
    """A module fixture named ``name`` whose value comes from a run in the background lane.

    Registers ``command`` (given the run's own directory) as the background run ``name``
    unless ``when`` is false (a run its tests would skip); the fixture waits for it and
    returns ``read(finished process, run)``. Assign the result to a module attribute of
    the same name.
    """
    if when:
        background.register(name, command, timeout, cwd=cwd, env=env, idle=idle)

    @pytest.fixture(scope="module", name=name)
    def finished(request: pytest.FixtureRequest) -> Any:
        run = background_run(request, name)
        return read(run.wait(), run)

    return finished


def background_orchestrator_run(
    name: str, command: Callable[[Path], list[str]], timeout: float = 300, idle: bool = False
) -> Any:
    """A :func:`background_fixture` giving the finished :class:`Run` of an orchestrator command.

    ``command`` gets the run's own directory and returns the orchestrator command whose run
    dir is ``<that directory>/run``; the run's ``wall_s`` is the orchestrator's own time.
    """

    def as_run(proc: subprocess.CompletedProcess[str], run: BackgroundRun) -> Run:
        return Run(proc.returncode, proc.stdout, proc.stderr, run.out_dir / "run", run.wall_s)

    return background_fixture(name, command, as_run, timeout, idle=idle)


def background_spec_run(name: str, spec: Path | str, *extra: str, timeout: float = 300, idle: bool = False) -> Any:
    """:func:`background_orchestrator_run` of ``python -m orchestrator SPEC`` with ``extra`` options."""
    return background_orchestrator_run(name, lambda out: orchestrator_command(spec, out / "run", *extra), timeout, idle)


# Session-wide runs: each serves the assertions of several test files, so that the suite
# pays for one launch of each (issue 15: the suite is CPU-bound on the workers' imports).


@pytest.fixture(scope="session")
def broken_reported_run(tmp_path_factory: pytest.TempPathFactory) -> ReportedRun:
    """One run of the broken spec writing HTML, PNG and JUnit (test_end_to_end, _html_report, _junit).

    One resume (``--single-stop``), the reference alongside stop and go
    (``--concurrent-reference always``, which ``auto`` does only with 4 cores a rank).
    """
    out = tmp_path_factory.mktemp("reported")
    html, png, junit = out / "reports" / "report.html", out / "reports" / "overlay.png", out / "junit" / "broken.xml"
    extra = ("--single-stop", "--concurrent-reference", "always")
    extra += ("--html-report", str(html), "--png-report", str(png), "--junit-xml", str(junit))
    return ReportedRun(run_orchestrator(BROKEN_SPEC, out / "run", *extra, timeout=800), html, png, junit)


@pytest.fixture(scope="session")
def default_cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The empty working directory of the default run: nothing may land there."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, default_cwd: Path) -> Run:
    """The default spec as a user first runs it: default options, 2 ranks (test_end_to_end)."""
    run_dir = tmp_path_factory.mktemp("default") / "run"
    return run_orchestrator(
        DEFAULT_SPEC, run_dir, "--json-report", str(run_dir.parent / "report.json"), cwd=default_cwd
    )


@pytest.fixture(scope="session")
def default_reference(default_run: Run) -> tuple[str, str]:
    """``--reference-from`` the default run: its continuous reference, for other 2-rank default-spec runs.

    The continuous run depends only on the spec, the ranks and the code (``reference_key``),
    not on where or how the other run stops, so those runs judge against this one.
    """
    return ("--reference-from", str(default_run.run_dir))


@pytest.fixture(scope="session")
def no_harness_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    """A spec error found by the workers, piped, and its JUnit file (test_bad_input, _live, _junit)."""
    out = tmp_path_factory.mktemp("no_harness")
    junit = out / "junit.xml"
    return run_orchestrator(SPECS / "no_harness.py", out / "run", "--junit-xml", str(junit)), junit
