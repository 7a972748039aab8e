"""The run itself: stop -> sentinel -> kill -> go -> continuous reference -> verdict.

With ``--cycles N`` the resumed phases ``go1`` ... ``go<N-1>`` are stopped and killed in
turn before the final ``go``; with ``--kill-at`` the stop lands between checkpoints; with
``--kill-during-save`` it lands halfway through writing ``last.ckpt``.

Each phase is a fresh torchrun launch, so nothing a worker held in memory survives into
the next phase. Whatever happens (failure, timeout, a signal to the orchestrator), every
process of the run is killed and confirmed dead before the run returns.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.exit_codes import ExitCode
from orchestrator.judge.verdict import Verdict, judge
from orchestrator.protocol import (
    PHASE_CONTINUOUS,
    PHASE_GO,
    PhasePlan,
    RunLayout,
    Sentinel,
    WorkerResult,
    phase_tag,
    read_json,
    read_results,
    write_json_atomic,
)
from orchestrator.run.events import (
    KILLED,
    PHASE_FINISHED,
    PHASE_SKIPPED,
    PHASE_STARTED,
    SENTINEL_SEEN,
    WORKER_NOTICE,
    RunEvents,
)
from orchestrator.run.failures import (
    Interrupted,
    RunFailed,
    died_after_training,
    dump_stacks,
    raise_spec_error,
    worker_failure,
)
from orchestrator.run.gpu import wait_for_gpu_release
from orchestrator.run.launcher import Launcher, LocalTorchrunLauncher, PhaseHandle
from orchestrator.run.multinode import MultiNodeLauncher
from orchestrator.run.options import RunOptions
from orchestrator.run.prewarm import (
    NOT_NEEDED,
    can_prewarm,
    defer_optional,
    give_go_ahead,
    kill_unreleased,
    kill_warm,
    later_epoch_possible,
    next_labels,
    reference_room,
)
from orchestrator.run.process_tree import KillReport, kill_run
from orchestrator.run.reference import shared_reference
from orchestrator.run.timings import reference_placement, run_timings

POLL_INTERVAL_S = 0.05
# How long killed CUDA processes may keep GPU memory before the next phase gives up.
GPU_RELEASE_TIMEOUT_S = 60.0


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
    # Seconds the phase waited, imported and idle, for its go-ahead (pre-warmed phases only).
    prewarmed_s: float | None = None


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
    stops: list[dict[str, Any]] = field(default_factory=list)
    stack_dumps: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    leftover_pids: list[int] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)


class Orchestrator:
    """Runs one spec through stop, kill, go and the reference, in separate processes."""

    def __init__(self, options: RunOptions, events: RunEvents, launcher: Launcher | None = None) -> None:
        self.options = options
        workers = options.workers()
        # A Slurm launcher comes from the caller (cli); here only local agents, one or N.
        local: Launcher = MultiNodeLauncher(workers) if options.nnodes > 1 else LocalTorchrunLauncher(workers)
        self.launcher = launcher or local
        self.layout = RunLayout(options.run_dir)
        self.run_id = uuid.uuid4().hex
        self.events = events
        self.active: PhaseHandle | None = None
        self.active_record: PhaseRecord | None = None
        # Pre-warmed phases by label, waiting for their go-ahead; and who warms during whom
        # (on a small machine optional phases, go1, once the phase before says they can run).
        self.warm: dict[str, tuple[PhaseHandle, PhaseRecord]] = {}
        self.warms_next: dict[str, list[str]] = {}
        self.warm_when_told: set[str] = set()  # optional phases whose warm waits (defer_optional)
        self.deferred: dict[str, list[str]] = {}  # ... by the phase whose workers will tell
        self.prewarm = can_prewarm(self.launcher, options.prewarm)
        self.concurrent = False  # the reference runs alongside stop and go (prewarm.reference_room)
        # time.time() when the last stopping phase was confirmed dead.
        self.kill_confirmed_at: float | None = None
        self.outcome = RunOutcome(ExitCode.INTERNAL_ERROR, "", options.run_dir)
        self.plans: dict[str, PhasePlan] = {}
        # Set while cleaning up, so a second signal cannot interrupt the cleanup.
        self.cleaning_up = False

    def run(self) -> RunOutcome:
        """Runs every phase and returns the outcome; never leaves a process behind."""
        outcome = self.outcome
        started = time.monotonic()
        try:
            plans = self.options.plans()
            for plan in plans:
                write_json_atomic(self.layout.phase_plan(plan.label), plan.to_dict())
            self.plans = {plan.label: plan for plan in plans}
            own_reference = self.options.reference and self.options.reference_from is None
            labels = [p.label for p in plans] + ([PHASE_CONTINUOUS] if own_reference else [])
            if own_reference and reference_room(self.options, self.launcher):  # runs alongside from the start
                self.concurrent, labels = True, labels[:-1]
                self.warm[PHASE_CONTINUOUS] = self._start(PHASE_CONTINUOUS)
            optional = {p.label for p in plans if p.stop_in_later_epoch}
            self.warms_next = next_labels(labels, optional) if self.prewarm else {}
            self.warm_when_told = optional if defer_optional(self.options) else set()
            for plan in list(plans[:-1]):
                if plan.stop_in_later_epoch and not self._later_epoch_checkpoint():
                    plans.remove(plan)
                    self._drop_phase(plan.label)
                    continue
                self._stopping_phase(plan)
            go_results = self._go_phase(plans[-1])
            reference_dir = self._reference_phase() if self.options.reference else None
            first = outcome.stops[0]
            outcome.verdict = judge(
                first["metadata_dir"],
                first["world_size"],
                reference_dir,
                resumed_labels=[p.label for p in plans if p.mode == PHASE_GO],
                stopping_labels=[p.label for p in plans[:-1]],
                tolerances={**_merged(go_results, "tolerances"), **(self.options.tolerances or {})},
                world_sizes=self.options.world_sizes(plans),
                metric_scopes=_merged(go_results, "metric_scopes"),
                bitwise=self.options.bitwise,
            )
            outcome.code, outcome.message = outcome.verdict.exit_code_and_message()
            self._raise_if_go_failed_alone(go_results)
        except RunFailed as failed:
            outcome.code, outcome.message = failed.code, failed.message
        except Interrupted as interrupted:
            outcome.code = ExitCode.INTERRUPTED
            outcome.message = f"interrupted by {interrupted}; workers killed"
        finally:
            self.cleaning_up = True
            self._kill_active("cleanup")
            outcome.phases.extend(kill_unreleased(self.warm, self.layout))
            # A last sweep by the run id also finds processes that left the tree.
            leftover = kill_run(None, self.run_id)
            outcome.leftover_pids = leftover.survivors
            reference = reference_placement(self.options.reference, self.options.reference_from, self.concurrent)
            total = time.monotonic() - started
            outcome.timings = run_timings(
                outcome.phases, self.layout, total, self.kill_confirmed_at, self.prewarm, reference
            )
        return outcome

    def stop_once(self) -> dict[str, Any]:
        """Runs only the first stopping phase and its kill; returns its record (benchmarks)."""
        plan = self.options.plans()[0]
        write_json_atomic(self.layout.phase_plan(plan.label), plan.to_dict())
        try:
            self._stopping_phase(plan)
        finally:
            self.cleaning_up = True
            self._kill_active("cleanup")
            kill_run(None, self.run_id)
        return self.outcome.stops[-1]

    # -- phases ---------------------------------------------------------------------

    def _launch(self, phase: str) -> tuple[PhaseHandle, PhaseRecord]:
        """Makes ``phase`` the active one: a pre-warmed launch gets its go-ahead, else a fresh one."""
        warm = self.warm.pop(phase, None)
        proc, record = warm or self._start(phase)
        if warm is not None and not (self.concurrent and phase == PHASE_CONTINUOUS):
            give_go_ahead(self.layout, phase)
            record.prewarmed_s = time.monotonic() - proc.started
            proc.started = time.monotonic()  # the phase's wall time and timeout count from here
        self.active, self.active_record = proc, record
        self.outcome.phases.append(record)
        for following in self.warms_next.get(phase, []):
            if following in self.warm_when_told:
                self.deferred.setdefault(phase, []).append(following)
            elif following not in self.warm and (following in self.plans or following == PHASE_CONTINUOUS):
                self.warm[following] = self._start(following, prewarmed=True)
        return proc, record

    def _warm_deferred(self, label: str) -> None:
        """Pre-warms the optional phases after ``label`` once its workers say they can run."""
        possible = later_epoch_possible(self.layout, label) if label in self.deferred else None
        if possible is not None:
            for following in self.deferred.pop(label):
                if possible and following not in self.warm and following in self.plans:
                    self.warm[following] = self._start(following, prewarmed=True)

    def _later_epoch_checkpoint(self) -> bool:
        """Whether the last stop's resume point lists a checkpoint in a later epoch (unknown: yes)."""
        point = (self.outcome.stops[-1].get("trigger") or {}).get("resume_point")
        # None: not known before training (a stream's epochs have no length); go1 finds out.
        later = point.get("later_epoch_checkpoints") if point else None
        return later is None or bool(later)

    def _drop_phase(self, label: str) -> None:
        """Leaves out a planned phase the run turned out not to need (go1 of a one-epoch run)."""
        self.plans.pop(label, None)
        warm = self.warm.pop(label, None)
        if warm is not None:
            kill_warm(*warm, self.layout, NOT_NEEDED)
        trigger = self.outcome.stops[-1]["trigger"]
        default = f"not needed: the run has no checkpoint in a later epoch than step {trigger.get('step')}'s"
        why = (trigger.get("resume_point") or {}).get("go1_not_run") or default  # a stop may say why itself
        self.events.event(PHASE_SKIPPED, label, f"{label}: {why}; go resumes from it")

    def _start(self, phase: str, prewarmed: bool = False) -> tuple[PhaseHandle, PhaseRecord]:
        plan = self.plans.get(phase)
        nproc = (plan.nproc_per_node if plan else None) or self.options.nproc_per_node
        extra = {"go_ahead": self.layout.go_ahead(phase)} if prewarmed else {}
        tag, timeout = phase_tag(self.run_id, phase), self.options.timeout_s
        proc = self.launcher.launch(phase, self.layout, tag, timeout, self.events, nproc_per_node=nproc, **extra)
        record = PhaseRecord(phase, proc.command, proc.pid, log=str(proc.log_path))
        how = "pre-warming (waits for its go-ahead)" if prewarmed else "launched"
        message = f"{phase}: {how} torchrun (pid {proc.pid}, {nproc} workers)"
        self.events.event(PHASE_STARTED, phase, message, agent_pid=proc.pid, nproc=nproc, prewarmed=prewarmed)
        return proc, record

    def _finish(self, proc: PhaseHandle, record: PhaseRecord, outcome: str) -> None:
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
        report = proc.kill(self.options.kill_signal, self.options.grace_s)
        record = self.active_record
        assert record is not None
        record.kill = report.to_dict()
        self._finish(proc, record, why)
        return report

    def _fail_if_overdue(self, proc: PhaseHandle, record: PhaseRecord, what: str) -> None:
        """Dumps stacks, kills the phase and ends the run with TIMEOUT once past --timeout."""
        if time.monotonic() - proc.started <= self.options.timeout_s:
            return
        dumps = dump_stacks(self.layout, proc.phase)
        self.outcome.stack_dumps.extend(dumps)
        self._kill_active("timeout")
        where = f"; stacks in {Path(dumps[0]).parent}" if dumps else ""
        raise RunFailed(
            ExitCode.TIMEOUT,
            f"{proc.phase} phase {what} within {self.options.timeout_s:g}s; workers killed (log: {record.log}{where})",
        )

    def _wait_for_stop(self, proc: PhaseHandle, record: PhaseRecord, plan: PhasePlan) -> dict[str, Any]:
        """Polls until the phase's trigger file appears: the sentinel, or the save marker."""
        trigger = self.layout.saving_marker if plan.kill_during_save else self.layout.sentinel
        what = "reached no half-written save" if plan.kill_during_save else "wrote no sentinel"
        while True:
            self._warm_deferred(plan.label)
            data = read_json(trigger)
            if data is not None:
                return data
            code = proc.poll()
            if code is not None:
                self._finish(proc, record, "died before the sentinel")
                # A resumed phase that stops again (go1, --cycles) failed after a resume.
                failed = ExitCode.GO_FAILED if plan.mode == PHASE_GO else ExitCode.STOP_FAILED
                self._raise_worker_failure(plan.label, failed, code, record)
            self._fail_if_overdue(proc, record, what)
            time.sleep(POLL_INTERVAL_S)

    def _stopping_phase(self, plan: PhasePlan) -> None:
        proc, record = self._launch(plan.label)
        data = self._wait_for_stop(proc, record, plan)
        detected = time.time()
        if plan.kill_during_save:
            closed = data.get("files_written")  # a plain script's checkpoint: its files (workers.plain.saves)
            how = f"{len(closed)} file(s) closed" if closed else f"{data['bytes_written']} of {data['bytes']} bytes"
            message = f"{plan.label}: {data['path']} half written ({how})"
            sentinel = None
            written_at = float(data["written_at"])
        else:
            sentinel = Sentinel.from_dict(data)
            message = (
                f"{plan.label}: sentinel at step {sentinel.stopped_at}, checkpoint of step {sentinel.step} "
                f"({sentinel.checkpoint_path})"
            )
            written_at = sentinel.written_at
        self.events.event(SENTINEL_SEEN, plan.label, message + "; killing the workers", **data)
        report = self._kill_active("killed after the sentinel")
        all_dead = self.kill_confirmed_at = time.time()
        assert report is not None
        if not report.all_dead:
            raise RunFailed(
                ExitCode.STOP_FAILED, f"{plan.label} processes survived {report.signal}: pids {report.survivors}"
            )
        # Keep the trigger file for the record, out of the way of the next stopping phase.
        trigger = self.layout.saving_marker if plan.kill_during_save else self.layout.sentinel
        archived = self.layout.archived_sentinel(plan.label)
        archived.parent.mkdir(parents=True, exist_ok=True)
        os.replace(trigger, archived)
        results = read_results(self.layout, plan.label)
        metadata_dir = sentinel.metadata_dir if sentinel else next(iter(results.values())).metadata_dir
        self.outcome.stops.append(
            {
                "label": plan.label,
                "trigger": data,
                "metadata_dir": metadata_dir,
                "world_size": sentinel.world_size if sentinel else len(results),
                "kill": report.to_dict(),
                "sentinel_to_detect_s": detected - written_at,
                "sentinel_to_all_dead_s": all_dead - written_at,
            }
        )
        if self.outcome.kill_latency_s is None:
            self.outcome.sentinel = sentinel
            self.outcome.detect_latency_s = detected - written_at
            self.outcome.kill_latency_s = all_dead - written_at
        gpu = wait_for_gpu_release(report.pids, GPU_RELEASE_TIMEOUT_S)
        self.outcome.stops[-1]["gpu_release"] = gpu.to_dict()
        if not gpu.released:
            raise RunFailed(
                ExitCode.GPU_NOT_RELEASED,
                f"{plan.label}: killed processes still hold memory on GPUs {gpu.holders} after "
                f"{GPU_RELEASE_TIMEOUT_S:g}s; the next phase would start on a busy GPU",
            )
        self.events.event(
            KILLED,
            plan.label,
            f"{plan.label}: {len(report.pids)} processes killed with {report.signal}, all confirmed gone "
            f"{all_dead - written_at:.3f}s after the sentinel",
            signal=report.signal,
            pids=report.pids,
            latency_s=all_dead - written_at,
        )

    def _run_to_end(self, phase: str) -> tuple[PhaseRecord, dict[int, WorkerResult]]:
        proc, record = self._launch(phase)
        while proc.poll() is None:
            self._fail_if_overdue(proc, record, "did not finish")
            time.sleep(POLL_INTERVAL_S)
        self._finish(proc, record, "finished")
        # Any worker that outlived the agent is a leak (this phase's tag: not a pre-warmed one).
        kill_run(None, phase_tag(self.run_id, phase))
        return record, read_results(self.layout, phase)

    def _go_phase(self, plan: PhasePlan) -> dict[int, WorkerResult]:
        record, results = self._run_to_end(plan.label)
        raise_spec_error(results)
        if any(r.status == "mismatch" for r in results.values()):
            record.outcome = "resume mismatch"
            return results
        self._check_exit(record, results, self.options.go_world_size, ExitCode.GO_FAILED)
        return results

    def _reference_phase(self) -> str:
        if self.options.reference_from is not None:  # shared: checked before the run started
            return shared_reference(self.options.reference_from, self.options.world_size)[0]
        record, results = self._run_to_end(PHASE_CONTINUOUS)
        raise_spec_error(results)
        self._check_exit(record, results, self.options.world_size, ExitCode.REFERENCE_FAILED)
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

    def _check_exit(self, record: PhaseRecord, results: dict[int, WorkerResult], ranks: int, code: ExitCode) -> None:
        """Raises for a phase that failed; one whose ranks all finished and then died is a warning."""
        warning = died_after_training(record.exit_code, results, ranks)
        if warning:
            record.outcome = f"finished; {warning}"
            self.events.event(WORKER_NOTICE, record.name, f"{record.name}: warning: {warning}")
        elif record.exit_code != 0 or len(results) < ranks:
            self._raise_worker_failure(record.name, code, record.exit_code, record)

    def _raise_worker_failure(self, phase: str, code: ExitCode, exit_code: int | None, record: PhaseRecord) -> None:
        record.outcome = "failed" if record.outcome == "finished" else record.outcome  # the table agrees
        raise worker_failure(phase, code, exit_code, record.results, record.log)


def _merged(results: dict[int, WorkerResult], field_name: str) -> dict[str, Any]:
    """Every rank's ``metric_scopes`` or ``tolerances`` in one mapping."""
    return {k: v for result in results.values() for k, v in getattr(result, field_name).items()}
