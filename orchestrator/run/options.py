"""What one run is asked to do: the command line's options, and the phase plan derived from them."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.protocol import PHASE_CONTINUOUS, PHASE_GO, PHASE_STOP, PhasePlan, RunLayout, write_json_atomic
from orchestrator.run.launcher import WorkerArgv, WorkerGroup
from orchestrator.run.reference import code_digest, reference_key


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
    # --bitwise: state digests judged bit for bit, not per tensor within tolerance (issue 12).
    bitwise: bool = False
    nnodes: int = 1
    cycles: int = 1
    kill_at: str | None = None  # "STEP" or "random:SEED"
    kill_during_save: bool = False
    # --tolerances: per-metric [rtol, atol] that override the spec's in the verdict (issue 4).
    tolerances: dict[str, list[float]] | None = None
    # --go-nproc-per-node: resumed phases run with this many workers (None: the same as stop).
    go_nproc_per_node: int | None = None
    # --no-prewarm turns off starting the next phase early (orchestrator.run.prewarm).
    prewarm: bool = True
    # --reference-from: a finished run dir whose continuous reference this run reuses.
    reference_from: Path | None = None
    # --concurrent-reference: auto (where the machine has room), always or never.
    concurrent_reference: str = "auto"
    # By default a second stop (go1) at the first checkpoint of a later epoch than the first
    # resume's, so the final go resumes after an epoch boundary (issue 12); --single-stop
    # turns it off. The runner drops go1 when the stop's resume point lists no such checkpoint.
    epoch_coverage: bool = True
    # ``stop-and-go run -- SCRIPT``: the worker command of each phase (None: the spec's worker).
    worker_argv: WorkerArgv | None = None

    def workers(self) -> WorkerGroup:
        """The spec, harness and ranks every phase launches."""
        return WorkerGroup(self.spec, self.harness, self.nproc_per_node, self.nnodes, self.worker_argv)

    @property
    def world_size(self) -> int:
        """Ranks of the stop and continuous phases."""
        return self.nproc_per_node * self.nnodes

    @property
    def go_world_size(self) -> int:
        """Ranks of every resumed phase."""
        return (self.go_nproc_per_node or self.nproc_per_node) * self.nnodes

    def plans(self) -> list[PhasePlan]:
        """The phases of the run before the reference: the stopping ones, then the final go."""
        plans = [PhasePlan(PHASE_STOP, PHASE_STOP, kill_at=self.kill_at, kill_during_save=self.kill_during_save)]
        # A fixed kill step applies to the first stop; a seeded one draws a step per phase.
        later_kill_at = self.kill_at if self.kill_at and self.kill_at.startswith("random:") else None
        for cycle in range(1, self.cycles):
            plans.append(PhasePlan(f"go{cycle}", PHASE_GO, stop_after_resume=True, kill_at=later_kill_at))
        if self.epoch_coverage and self.cycles == 1 and not (self.kill_at or self.kill_during_save):
            # Without a later epoch's checkpoint, go1 stops at once and go resumes where it did.
            plans.append(PhasePlan("go1", PHASE_GO, stop_after_resume=True, stop_in_later_epoch=True))
        plans.append(PhasePlan(PHASE_GO, PHASE_GO))
        if self.go_world_size != self.world_size:
            for i, plan in enumerate(plans[1:]):
                plan.nproc_per_node = self.go_nproc_per_node
                # Only the first resume reads a checkpoint of the stop's world size.
                plan.checkpoint_world_size = self.world_size if i == 0 else None
        return plans

    def world_sizes(self, plans: list[PhasePlan]) -> dict[str, int]:
        """Ranks of every phase by label, the reference included."""
        sizes = {p.label: (self.go_world_size if p.mode == PHASE_GO else self.world_size) for p in plans}
        sizes[PHASE_CONTINUOUS] = self.world_size
        return sizes


def write_run_json(layout: RunLayout, options: RunOptions, run_id: str) -> None:
    """Records what this run is, before anything is launched."""
    write_json_atomic(
        layout.run_json,
        {
            "run_id": run_id,
            "spec": str(options.spec),
            "harness": options.harness,
            "nproc_per_node": options.nproc_per_node,
            "go_nproc_per_node": options.go_nproc_per_node,
            "kill_signal": signal.Signals(options.kill_signal).name,
            "timeout_s": options.timeout_s,
            "reference": options.reference,
            "cycles": options.cycles,
            "kill_at": options.kill_at,
            "kill_during_save": options.kill_during_save,
            "started_at": time.time(),
            # What a later run's --reference-from checks before it reuses this run's reference.
            "code_digest": code_digest(),
            "reference_key": reference_key(options.spec, options.harness, options.nproc_per_node, options.nnodes),
            "reference_from": str(options.reference_from) if options.reference_from else None,
        },
    )
