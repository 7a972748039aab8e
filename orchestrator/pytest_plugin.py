"""A pytest plugin (entry point ``pytest11``): the ``stop_and_go`` fixture.

A project proves its checkpoints resume with an ordinary test::

    def test_resume(stop_and_go):
        stop_and_go.run("my_spec.py", nproc_per_node=2)

    class MyHarness(StopAndGoHarness):  # a BioNeMo-style harness, in the test file itself
        ...

    def test_my_harness(stop_and_go):
        stop_and_go.run_harness(MyHarness)

    def test_my_script(stop_and_go):  # an unmodified training script (zero-code mode)
        stop_and_go.run_script("train.py", "--max-steps", "12", go_args="--ckpt_path {checkpoint}")

Each call runs ``python -m orchestrator`` in a subprocess (real torchrun workers, a real
kill), with its run directory under the test's ``tmp_path``. A verdict other than
"resume verified" fails the test with the metric table, the first divergent step of each
metric and the run directory in the message. ``check=False`` returns the result instead.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Seconds the orchestrator gets to kill its workers after a timeout's SIGTERM.
_CLEANUP_S = 60.0


@dataclass
class StopAndGoResult:
    """One finished orchestrator run."""

    returncode: int
    run_dir: Path
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    @property
    def verified(self) -> bool:
        """True when the resume was verified (exit 0)."""
        return self.returncode == 0


class StopAndGo:
    """What the ``stop_and_go`` fixture gives a test: ``run(spec)``, ``run_harness(cls)``, ``run_script(path)``.

    Args:
        base_dir: where the runs' directories go (the test's ``tmp_path``).
        search_dirs: where a relative spec path is looked up, in order (the test file's
            directory, then the rootdir); the working directory comes last.
    """

    def __init__(self, base_dir: Path, search_dirs: list[Path]) -> None:
        self.base_dir = Path(base_dir)
        self.search_dirs = [Path(d) for d in search_dirs]
        self.runs: list[StopAndGoResult] = []

    def resolve_spec(self, spec: str | os.PathLike[str]) -> Path:
        """The spec file ``spec`` names; fails the test when there is none."""
        path = Path(spec)
        candidates = [path] if path.is_absolute() else [d / path for d in self.search_dirs] + [Path.cwd() / path]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        pytest.fail(
            f"stop-and-go: spec file not found: {spec} (looked in {', '.join(map(str, candidates))})", pytrace=False
        )

    def run(
        self,
        spec: str | os.PathLike[str],
        *,
        nproc_per_node: int = 2,
        harness: str | None = None,
        kill_signal: str = "KILL",
        reference: bool = True,
        timeout: float = 600.0,
        extra_args: list[str] | tuple[str, ...] = (),
        check: bool = True,
    ) -> StopAndGoResult:
        """Runs the orchestrator on ``spec``; fails the test unless the resume is verified.

        Args:
            spec: the spec file (relative paths: see ``search_dirs``).
            nproc_per_node: workers per phase.
            harness: the harness class to run when the spec defines several.
            kill_signal: ``KILL``, ``TERM`` or ``INT``.
            reference: run the continuous reference (the step-by-step trajectory check).
            timeout: the orchestrator's limit for each phase, in seconds.
            extra_args: more ``python -m orchestrator`` options (``--cycles 2`` ...).
            check: fail the test on any verdict but "verified" (else return the result).
        """
        spec_path = self.resolve_spec(spec)
        run_dir = self.base_dir / f"{spec_path.stem}-{len(self.runs) + 1}"
        command = [
            sys.executable,
            "-m",
            "orchestrator",
            str(spec_path),
            *self._common_args(run_dir, nproc_per_node, kill_signal, timeout, reference),
            *(["--harness", harness] if harness else []),
            *extra_args,
        ]
        return self._finish(command, spec_path, run_dir, timeout, check)

    @staticmethod
    def _common_args(
        run_dir: Path, nproc_per_node: int, kill_signal: str, timeout: float, reference: bool
    ) -> list[str]:
        return [
            "--run-dir",
            str(run_dir),
            "--nproc-per-node",
            str(nproc_per_node),
            "--kill-signal",
            kill_signal,
            "--timeout",
            str(timeout),
            "--plain",
            *([] if reference else ["--no-reference"]),
        ]

    def _finish(self, command: list[str], target: Path, run_dir: Path, timeout: float, check: bool) -> StopAndGoResult:
        result = self._execute(command, run_dir, timeout)
        self.runs.append(result)
        if check and not result.verified:
            pytest.fail(failure_message(target, result), pytrace=False)
        return result

    def run_script(
        self,
        script: str | os.PathLike[str],
        *script_args: str,
        go_args: str = "",
        checkpoint_every: int | None = None,
        nproc_per_node: int = 2,
        kill_signal: str = "KILL",
        reference: bool = True,
        timeout: float = 600.0,
        extra_args: list[str] | tuple[str, ...] = (),
        check: bool = True,
    ) -> StopAndGoResult:
        """Runs an unmodified training script as ``stop-and-go run -- SCRIPT ARGS`` does.

        Args:
            script: the training script (relative paths: see ``search_dirs``).
            script_args: its command-line arguments, placeholders (``{phase_dir}``,
                ``{ckpt_dir}``) allowed.
            go_args: appended to go's command line only, e.g. ``"--ckpt_path {checkpoint}"``.
            checkpoint_every: add a step ``ModelCheckpoint`` (``--checkpoint-every``).
            extra_args: more ``stop-and-go run`` options (``--cycles 2``, ``--check-rng`` ...).
            The other arguments are those of ``run``.
        """
        script_path = self.resolve_spec(script)
        run_dir = self.base_dir / f"{script_path.stem}-{len(self.runs) + 1}"
        command = [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            *self._common_args(run_dir, nproc_per_node, kill_signal, timeout, reference),
            *(["--go-args", go_args] if go_args else []),
            *(["--checkpoint-every", str(checkpoint_every)] if checkpoint_every else []),
            *extra_args,
            "--",
            str(script_path),
            *script_args,
        ]
        return self._finish(command, script_path, run_dir, timeout, check)

    def run_harness(self, harness_cls: type, **kwargs: Any) -> StopAndGoResult:
        """Runs a harness class: its source file as the spec, its name as ``--harness``.

        The class must be defined at module level (the workers import its file afresh).
        """
        if harness_cls.__qualname__ != harness_cls.__name__:
            pytest.fail(f"stop-and-go: {harness_cls.__qualname__} must be defined at module level", pytrace=False)
        source = inspect.getsourcefile(harness_cls)
        if source is None:
            pytest.fail(f"stop-and-go: cannot find the source file of {harness_cls.__name__}", pytrace=False)
        return self.run(source, harness=harness_cls.__name__, **kwargs)

    def _execute(self, command: list[str], run_dir: Path, timeout: float) -> StopAndGoResult:
        # A test run inside an orchestrator run must not inherit that run's identity.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOP_AND_GO_")}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # Every phase has its own limit; allow all of them plus start-up and cleanup.
        try:
            stdout, stderr = proc.communicate(timeout=4 * timeout + _CLEANUP_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the orchestrator kills its workers, then exits 130
            try:
                stdout, stderr = proc.communicate(timeout=_CLEANUP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
        report_path = run_dir / "report.json"
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
        return StopAndGoResult(proc.returncode, run_dir, stdout, stderr, report)


def failure_message(spec: Path, result: StopAndGoResult) -> str:
    """The failure shown by pytest: verdict, first divergences, metric table, run dir."""
    report = result.report
    if report is None:
        error = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        return f"stop-and-go: {spec.name}: exit {result.returncode}: {error[0]} (run dir {result.run_dir})"
    from orchestrator.report.junit import failure_text

    _, text = failure_text(report)
    harness = report.get("harness") or "?"
    head = f"stop-and-go: {spec.name} ({harness}): exit {report.get('exit_code')}: {report.get('exit_meaning')}"
    return f"{head}\n{text}\nlogs: {result.run_dir / 'logs'}"


@pytest.fixture
def stop_and_go(request: pytest.FixtureRequest, tmp_path: Path) -> StopAndGo:
    """Runs stop-and-go on a spec, a harness class or a training script; a failed verdict fails the test."""
    return StopAndGo(tmp_path / "stop_and_go", [Path(request.path).parent, Path(request.config.rootpath)])
