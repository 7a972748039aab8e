"""The run itself: stop -> sentinel -> kill -> go -> continuous reference -> verdict.

Each phase is a fresh torchrun launch, so nothing a worker held in memory survives into
the next phase. Whatever happens (failure, timeout, a signal to the orchestrator), every
process of the run is killed and confirmed dead before the run returns.
"""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.events import KILLED, PHASE_FINISHED, PHASE_STARTED, SENTINEL_SEEN, RunEvents
from orchestrator.exit_codes import ExitCode
from orchestrator.launcher import PhaseProcess, torchrun_command
from orchestrator.process_tree import KillReport, kill_run
from orchestrator.protocol import (
    PHASE_CONTINUOUS,
    PHASE_GO,
    PHASE_STOP,
    RunLayout,
    Sentinel,
    WorkerResult,
    read_json,
    read_results,
    write_json_atomic,
)
from orchestrator.verdict import Verdict, judge

POLL_INTERVAL_S = 0.05


class RunFailed(Exception):
    """Ends the run with ``code``; ``message`` is the one-line reason shown to the user."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Interrupted(Exception):
    """The orchestrator received SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class RunOptions:
    """Everything a run needs, as parsed from the command line."""

    spec: Path
    run_dir: Path
    harness: str | None = None
    nproc_per_node: int = 2
    kill_signal: int = signal.SIGKILL
    grace_s: float = 10.0
    timeout_s: float = 600.0
    reference: bool = True


@dataclass
class PhaseRecord:
    """What one phase did, for the report."""

    name: str
    command: list[str]
    agent_pid: int
    pids: list[int] = field(default_factory=list)
    exit_code: int | None = None
    wall_s: float = 0.0
    outcome: str = "running"
    log: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    kill: dict[str, Any] | None = None


@dataclass
class RunOutcome:
    """The end of a run: exit code, one-line message and everything the report shows."""

    code: ExitCode
    message: str
    run_dir: Path
    phases: list[PhaseRecord] = field(default_factory=list)
    sentinel: Sentinel | None = None
    kill_latency_s: float | None = None
    detect_latency_s: float | None = None
    verdict: Verdict | None = None
    leftover_pids: list[int] = field(default_factory=list)


class Orchestrator:
    """Runs one spec through stop, kill, go and the reference, in separate processes."""

    def __init__(self, options: RunOptions, events: RunEvents) -> None:
        self.options = options
        self.layout = RunLayout(options.run_dir)
        self.run_id = uuid.uuid4().hex
        self.events = events
        self.active: PhaseProcess | None = None
        self.outcome = RunOutcome(ExitCode.INTERNAL_ERROR, "", options.run_dir)
        # Set while cleaning up, so a second signal cannot interrupt the cleanup.
        self.cleaning_up = False

    def run(self) -> RunOutcome:
        """Runs every phase and returns the outcome; never leaves a process behind."""
        outcome = self.outcome
        try:
            sentinel = self._stop_phase()
            go_results = self._go_phase(sentinel)
            reference_dir = self._reference_phase() if self.options.reference else None
            outcome.verdict = judge(
                sentinel.metadata_dir,
                sentinel.step,
                sentinel.world_size,
                reference_dir,
                tolerances=_tolerances(go_results),
            )
            if outcome.verdict.ok:
                outcome.code, outcome.message = ExitCode.VERIFIED, "resume verified"
            else:
                outcome.code = ExitCode.MISMATCH
                outcome.message = "resume mismatch: " + outcome.verdict.failures[0]
            self._raise_if_go_failed_alone(go_results)
        except RunFailed as failed:
            outcome.code, outcome.message = failed.code, failed.message
        except Interrupted as interrupted:
            outcome.code = ExitCode.INTERRUPTED
            outcome.message = f"interrupted by {interrupted}; workers killed"
        finally:
            self.cleaning_up = True
            self._kill_active("cleanup")
            # A last sweep by the run id also finds processes that left the tree.
            leftover = kill_run(None, self.run_id)
            outcome.leftover_pids = leftover.survivors
        return outcome

    # -- phases ---------------------------------------------------------------------

    def _launch(self, phase: str) -> tuple[PhaseProcess, PhaseRecord]:
        command = torchrun_command(
            self.options.spec, phase, self.layout, self.options.nproc_per_node, self.options.harness
        )
        proc = PhaseProcess(
            phase,
            command,
            self.layout,
            self.run_id,
            wait_for_kill_s=self.options.timeout_s,
            events=self.events,
        )
        self.active = proc
        record = PhaseRecord(phase, command, proc.pid, log=str(proc.log_path))
        self.outcome.phases.append(record)
        self.events.event(
            PHASE_STARTED,
            phase,
            f"{phase}: launched torchrun (pid {proc.pid}, {self.options.nproc_per_node} workers)",
            agent_pid=proc.pid,
            nproc=self.options.nproc_per_node,
        )
        return proc, record

    def _finish(self, proc: PhaseProcess, record: PhaseRecord, outcome: str) -> None:
        record.exit_code = proc.reap()
        record.wall_s = time.monotonic() - proc.started
        record.outcome = outcome
        results = read_results(self.layout, proc.phase)
        record.results = [r.to_dict() for r in results.values()]
        proc.pids_seen.update(r.pid for r in results.values())
        record.pids = sorted(proc.pids_seen)
        self.active = None
        self.events.event(
            PHASE_FINISHED,
            proc.phase,
            f"{proc.phase}: {outcome} after {record.wall_s:.1f}s (torchrun exit {record.exit_code})",
            wall_s=record.wall_s,
            exit_code=record.exit_code,
            outcome=outcome,
        )

    def _kill_active(self, why: str) -> KillReport | None:
        proc = self.active
        if proc is None:
            return None
        proc.note_pids()
        report = kill_run(proc.pid, self.run_id, self.options.kill_signal, self.options.grace_s)
        record = self.outcome.phases[-1]
        record.kill = report.to_dict()
        self._finish(proc, record, why)
        return report

    def _fail_if_overdue(self, proc: PhaseProcess, record: PhaseRecord, what: str) -> None:
        """Kills the phase and ends the run with TIMEOUT once it has run past --timeout."""
        if time.monotonic() - proc.started <= self.options.timeout_s:
            return
        self._kill_active("timeout")
        raise RunFailed(
            ExitCode.TIMEOUT,
            f"{proc.phase} phase {what} within {self.options.timeout_s:g}s; workers killed (log: {record.log})",
        )

    def _stop_phase(self) -> Sentinel:
        proc, record = self._launch(PHASE_STOP)
        while True:
            data = read_json(self.layout.sentinel)
            if data is not None:
                sentinel = Sentinel.from_dict(data)
                break
            code = proc.poll()
            if code is not None:
                self._finish(proc, record, "died before the sentinel")
                self._raise_worker_failure(PHASE_STOP, ExitCode.STOP_FAILED, code, record)
            self._fail_if_overdue(proc, record, "wrote no sentinel")
            time.sleep(POLL_INTERVAL_S)

        detected = time.time()
        self.events.event(
            SENTINEL_SEEN,
            PHASE_STOP,
            f"stop: sentinel at step {sentinel.step} ({sentinel.checkpoint_path}); killing the workers",
            step=sentinel.step,
            checkpoint_path=sentinel.checkpoint_path,
        )
        report = self._kill_active("killed after the sentinel")
        all_dead = time.time()
        assert report is not None
        if not report.all_dead:
            raise RunFailed(ExitCode.STOP_FAILED, f"stop processes survived {report.signal}: pids {report.survivors}")
        self.outcome.sentinel = sentinel
        self.outcome.detect_latency_s = detected - sentinel.written_at
        self.outcome.kill_latency_s = all_dead - sentinel.written_at
        self.events.event(
            KILLED,
            PHASE_STOP,
            f"stop: {len(report.pids)} processes killed with {report.signal}, all confirmed gone "
            f"{self.outcome.kill_latency_s:.3f}s after the sentinel",
            signal=report.signal,
            pids=report.pids,
            latency_s=self.outcome.kill_latency_s,
        )
        return sentinel

    def _run_to_end(self, phase: str) -> tuple[PhaseRecord, dict[int, WorkerResult]]:
        proc, record = self._launch(phase)
        while proc.poll() is None:
            self._fail_if_overdue(proc, record, "did not finish")
            time.sleep(POLL_INTERVAL_S)
        self._finish(proc, record, "finished")
        # The agent is gone; any worker that outlived it is a leak to clean up now.
        kill_run(None, self.run_id)
        return record, read_results(self.layout, phase)

    def _go_phase(self, sentinel: Sentinel) -> dict[int, WorkerResult]:
        record, results = self._run_to_end(PHASE_GO)
        self._raise_spec_error(results)
        if any(r.status == "mismatch" for r in results.values()):
            record.outcome = "resume mismatch"
            return results
        if record.exit_code != 0 or len(results) < sentinel.world_size:
            self._raise_worker_failure(PHASE_GO, ExitCode.GO_FAILED, record.exit_code, record)
        return results

    def _reference_phase(self) -> str:
        record, results = self._run_to_end(PHASE_CONTINUOUS)
        self._raise_spec_error(results)
        if record.exit_code != 0 or not results:
            self._raise_worker_failure(PHASE_CONTINUOUS, ExitCode.REFERENCE_FAILED, record.exit_code, record)
        metadata_dir = results[min(results)].metadata_dir
        assert metadata_dir is not None
        return metadata_dir

    # -- failures -------------------------------------------------------------------

    def _raise_if_go_failed_alone(self, go_results: dict[int, WorkerResult]) -> None:
        """A go run that crashed after a clean resume check is a go failure, not a pass."""
        if self.outcome.code != ExitCode.VERIFIED:
            return
        failed = [r for r in go_results.values() if r.status != "ok"]
        if failed:
            raise RunFailed(ExitCode.GO_FAILED, f"go phase failed: rank {failed[0].rank}: {failed[0].error}")

    def _raise_spec_error(self, results: dict[int, WorkerResult]) -> None:
        for result in results.values():
            if result.status == "spec_error":
                raise RunFailed(ExitCode.USAGE, result.error or "bad spec")

    def _raise_worker_failure(self, phase: str, code: ExitCode, exit_code: int | None, record: PhaseRecord) -> None:
        results = {r["rank"]: WorkerResult.from_dict(r) for r in record.results}
        self._raise_spec_error(results)
        errors = [r for r in results.values() if r.error]
        reason = f"rank {errors[0].rank}: {errors[0].error}" if errors else f"torchrun exited with {exit_code}"
        raise RunFailed(code, f"{phase} phase failed: {reason} (log: {record.log})")


def _tolerances(results: dict[int, WorkerResult]) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for result in results.values():
        merged.update(result.tolerances)
    return merged


def write_run_json(layout: RunLayout, options: RunOptions, run_id: str) -> None:
    """Records what this run is, before anything is launched."""
    write_json_atomic(
        layout.run_json,
        {
            "run_id": run_id,
            "spec": str(options.spec),
            "harness": options.harness,
            "nproc_per_node": options.nproc_per_node,
            "kill_signal": signal.Signals(options.kill_signal).name,
            "timeout_s": options.timeout_s,
            "reference": options.reference,
            "started_at": time.time(),
        },
    )
