"""Lightning callbacks of the stop-and-go harness, with the seed's names.

- ``MetadataSaveCallback`` (stopping phases): saves every rank's metrics with every
  checkpoint, describing exactly the state the checkpoint holds.
- ``RaiseAfterMetadataCallback`` (stopping phases): at the first checkpointed validation
  (or at the ``--kill-at`` step), once the metadata and the checkpoint are complete on
  disk, rank 0 writes the sentinel; then every rank waits to be killed by the
  orchestrator and raises ``StopAndGoException`` if that does not happen in time.
- ``TestCheckpointIntegrityCallback`` (resumed phases): compares each rank's resumed
  metrics with those saved for the resumed step, writes the comparison, and fails the
  run at train end.
- ``MetricsTrajectoryCallback`` (every mode): records the metrics after every optimizer
  step, per rank, so the orchestrator can compare go with a continuous reference run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from orchestrator.judge.compare import Tolerances, check_metrics
from orchestrator.judge.metric_scopes import not_compared
from orchestrator.protocol import (
    MetadataLayout,
    Sentinel,
    read_json,
    sentinel_path_for,
    wait_for_kill_s_from_env,
    write_json_atomic,
)
from workers.backends.base import Backend
from workers.backends.lightning import LightningBackend
from workers.checkpoints import (
    SavedEpochs,
    checkpoint_interval,
    checkpoint_saved_at,
    last_saved_step,
    last_training_step,
    publish_outlook,
    resume_point,
    steps_per_epoch,
    validates_on_checkpoint_steps,
)
from workers.errors import ResumeMismatchError, StopAndGoException
from workers.metrics import MetricsFn, collect_metrics, to_jsonable
from workers.record.fingerprint import sampled
from workers.record.ledger import BatchRecorder
from workers.record.state import StateRecorder, state_groups
from workers.record.trajectory import write_trajectory
from workers.stop_plan import StopPlanError, kill_step_not_reached, resolve_kill_at


class MetadataSaveCallback(Callback):
    """Saves every rank's metrics each time a checkpoint is saved.

    The metrics are taken in ``on_save_checkpoint``, while the checkpoint is being built,
    so they describe exactly the state the checkpoint holds; a resume from that step
    must reproduce them. Files: ``MetadataLayout.metadata(rank, step)``.

    Args:
        metadata_path: the harness's metadata directory (``root_dir / exp_name``).
        metrics_getter: metric name to ``fn(trainer, module)``.
    """

    def __init__(self, metadata_path: str | os.PathLike[str], metrics_getter: Mapping[str, MetricsFn]) -> None:
        self.metadata_path = Path(metadata_path)
        self.metrics_getter = dict(metrics_getter)
        self.saved_steps: set[int] = set()

    @property
    def called(self) -> bool:
        """Whether metadata was saved at least once (the seed's attribute)."""
        return bool(self.saved_steps)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        step = trainer.global_step
        if step in self.saved_steps:
            return  # ``last.ckpt`` and the step's own file hold the same state
        payload = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "step": step,
            "pid": os.getpid(),
            "metrics": collect_metrics(self.metrics_getter, trainer, pl_module),
        }
        write_json_atomic(MetadataLayout(self.metadata_path).metadata(trainer.global_rank, step), payload)
        self.saved_steps.add(step)


def flush_trajectories(trainer: pl.Trainer, complete_steps_only: bool = False) -> None:
    """Writes what every ``MetricsTrajectoryCallback`` of ``trainer`` has recorded so far."""
    for callback in trainer.callbacks:
        if isinstance(callback, MetricsTrajectoryCallback):
            callback.flush(trainer, complete_steps_only=complete_steps_only)


class RaiseAfterMetadataCallback(Callback):
    """Writes the sentinel once a complete checkpoint and its metadata exist, then stops.

    By default it stops at the first validation that falls on a checkpoint step (after
    the resume, in a resumed phase that stops again). With ``kill_at`` it stops when
    training reaches that step, whether or not it is a checkpoint step; the sentinel
    then names the last complete checkpoint, which is what a resume will start from.
    After the sentinel every rank waits to be killed, and raises ``StopAndGoException``
    if that does not happen in time.

    Args:
        metadata_path: the harness's metadata directory.
        wait_for_kill_s: seconds to wait for the orchestrator's kill after the sentinel
            before raising; ``None`` reads the orchestrator's setting from the environment
            (0 without an orchestrator, which raises at once as the seed did).
        sentinel_path: where to write the sentinel; ``None`` uses the orchestrator's run
            directory when set, else the metadata directory.
        kill_at: ``"STEP"`` or ``"random:SEED"``; ``None`` takes the phase plan's, if any.
        label: the phase's label, recorded in the sentinel.
        backend: vets the checkpoint before the sentinel names it; Lightning's by default.
        later_epoch: stop only at a checkpoint saved in a later epoch than the one this
            phase started in (the default scenario's second stop, go1, for coverage).
    """

    def __init__(
        self,
        metadata_path: str | os.PathLike[str],
        wait_for_kill_s: float | None = None,
        sentinel_path: str | os.PathLike[str] | None = None,
        kill_at: str | None = None,
        label: str = "stop",
        backend: Backend | None = None,
        later_epoch: bool = False,
    ) -> None:
        self.metadata_path = Path(metadata_path)
        self.wait_for_kill_s = wait_for_kill_s
        self.sentinel_path = Path(sentinel_path) if sentinel_path else None
        self.kill_at = kill_at
        self.label = label
        self.backend = backend or LightningBackend()
        self.later_epoch = later_epoch
        self.start_step = 0
        self.start_epoch = 0
        self.by_validation = False
        self.kill_step: int | None = None
        self.first_step = 1
        self.last_step: int | None = None
        # Where each checkpoint was saved: the epochs of a stream have no length up front.
        self.saved_epochs = SavedEpochs()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_step = trainer.global_step
        # A fresh run can only be resumed after its first checkpoint; a resumed run may be
        # stopped again before its next one (it then resumes from the same checkpoint).
        interval = checkpoint_interval(trainer)
        first = self.start_step + 1 if trainer.ckpt_path else interval
        self.first_step = first
        per_epoch = steps_per_epoch(trainer)
        self.start_epoch = self.start_step // per_epoch if per_epoch else trainer.current_epoch
        # When validations fall on checkpoint steps, stop at a validated one (the seed's rule).
        # go1 (later_epoch) takes any checkpoint of a later epoch: a validated one may come only at the end.
        self.by_validation = validates_on_checkpoint_steps(trainer) and not self.later_epoch
        if trainer.ckpt_path:
            self.saved_epochs.record(trainer, at_start=True)
        self.last_step = last_step = last_training_step(trainer)
        self.kill_step = resolve_kill_at(self.kill_at, first, last_step, self.label)
        if self.kill_step is not None:
            # Fail now, not after a whole run that never reaches the step (where the last step is known).
            if last_step is not None and self.kill_step >= last_step:
                raise StopPlanError(
                    f"--kill-at {self.kill_step} is not before the run's last step ({last_step}); "
                    f"choose a step in [{first}, {last_step - 1}]"
                )
            rank_zero_info(f"stop-and-go: {self.label} will stop at step {self.kill_step}")
        publish_outlook(trainer, self.label, first)
        if self.later_epoch and trainer.ckpt_path:
            point = resume_point(trainer, self.start_step, self.saved_epochs.position(self.start_step))
            if point["later_epoch_checkpoints"] == []:  # none in a later epoch: resume the next phase from here
                rank_zero_info(f"stop-and-go: {self.label}: no checkpoint in a later epoch; stopping at once")
                self._stop(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Step ``kill_step`` is complete here: trained, validated and checkpointed if due.
        # Any checkpoint cadence: every step's (and the previous epoch's end) checkpoint is
        # whole on disk here, since ModelCheckpoint's hooks ran after the previous batch.
        at_kill_step = self.kill_step is not None and trainer.global_step == self.kill_step
        if at_kill_step or (not self.by_validation and self._checkpoint_to_stop_at(trainer)):
            self._stop(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A checkpoint written at the very end (the last epoch's) is still one to stop at.
        # on_train_end runs after ModelCheckpoint's epoch-end save. Not for go1: the final go
        # would have no step left to train.
        if not self.later_epoch and self._checkpoint_to_stop_at(trainer):
            self._stop(trainer)
        self._check_kill_step_reached(trainer)

    def _check_kill_step_reached(self, trainer: pl.Trainer) -> None:
        """At train end: a ``--kill-at`` step never reached is a plan error, said as such."""
        error = kill_step_not_reached(trainer, self.kill_step, self.label, self.first_step, self.last_step)
        if error is not None:
            raise error

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.saved_epochs.record(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The seed's rule: the first validation that falls on a checkpoint step.
        if trainer.sanity_checking or self.kill_at:
            return
        step = trainer.global_step
        if step <= self.start_step or not self._in_epoch_to_stop(trainer, step):
            return
        if MetadataLayout(self.metadata_path).metadata(trainer.global_rank, step).exists():
            self._stop(trainer)

    def _in_epoch_to_stop(self, trainer: pl.Trainer, step: int) -> bool:
        """Whether the checkpoint of ``step`` may be stopped at: for go1 (``later_epoch``), one of a later epoch."""
        return not self.later_epoch or self.saved_epochs.epoch_of(trainer, step) > self.start_epoch

    def _checkpoint_to_stop_at(self, trainer: pl.Trainer) -> bool:
        """Whether this process saved a complete checkpoint (with metadata) to stop at."""
        if self.kill_at:
            return False
        step = last_saved_step(trainer)
        if step is None or step <= self.start_step:
            return False
        if not self._in_epoch_to_stop(trainer, step):
            return False
        return MetadataLayout(self.metadata_path).metadata(trainer.global_rank, step).exists()

    def _stop(self, trainer: pl.Trainer) -> None:
        stopped_at = trainer.global_step
        flush_trajectories(trainer)
        self.backend.finish_pending_saves(trainer)  # async saves: complete before the sentinel
        # Every rank has saved its metadata (and Trainer.save_checkpoint ends in a barrier).
        trainer.strategy.barrier("stop_and_go_metadata_saved")
        if trainer.is_global_zero:
            checkpoint, step = self._last_complete_checkpoint(trainer)
            sentinel = Sentinel(
                step=step,
                checkpoint_path=str(checkpoint.resolve()),
                metadata_dir=str(self.metadata_path.resolve()),
                world_size=trainer.world_size,
                pid=os.getpid(),
                label=self.label,
                stopped_at=stopped_at,
                resume_point=resume_point(trainer, step, self.saved_epochs.position(step)),
            )
            write_json_atomic(self.sentinel_path or sentinel_path_for(self.metadata_path), sentinel.to_dict())
        self._wait_to_be_killed(trainer, stopped_at)

    def _last_complete_checkpoint(self, trainer: pl.Trainer) -> tuple[Path, int]:
        step = last_saved_step(trainer)
        if step is not None:
            checkpoint = checkpoint_saved_at(trainer, step)
        elif trainer.ckpt_path:  # stopped again before this resumed phase saved anything
            checkpoint, step = Path(trainer.ckpt_path), self.start_step
        else:
            raise StopAndGoException(f"stopped at step {trainer.global_step}, before any checkpoint was saved")
        assert checkpoint is not None
        self.backend.verify_complete(checkpoint, step)
        if not MetadataLayout(self.metadata_path).metadata(trainer.global_rank, step).exists():
            raise StopAndGoException(f"no metadata was saved for the checkpoint of step {step}")
        return checkpoint, step

    def _wait_to_be_killed(self, trainer: pl.Trainer, step: int) -> None:
        timeout = self.wait_for_kill_s if self.wait_for_kill_s is not None else wait_for_kill_s_from_env()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Lightning's SIGTERM handler only sets this flag and leaves the process to end
            # at the next batch; waiting here there is no next batch, so end now (graceful).
            if getattr(trainer, "received_sigterm", False):
                raise StopAndGoException(f"stopped at step {step}: SIGTERM received")
            time.sleep(0.05)
        raise StopAndGoException(f"stopped at step {step} (not killed within {timeout:g}s)")


class TestCheckpointIntegrityCallback(Callback):
    """Checks, on every rank, that the resumed state equals the state saved at that step.

    The comparison is written at train start (so the orchestrator has it even if the run
    dies later); a mismatch fails the run at train end, after the resumed run has
    recorded its whole trajectory.

    When the checkpoint was written by another number of ranks (``--go-nproc-per-node``),
    every rank is checked against rank 0's saved values on the metrics that do not depend
    on the world size (``orchestrator.judge.metric_scopes``); the per-rank ones are recorded as
    ``changed``, not compared.
    """

    __test__ = False  # not a pytest test class, despite the seed's name

    def __init__(
        self,
        metadata_path: str | os.PathLike[str],
        metrics_getter: Mapping[str, MetricsFn],
        tolerances: Tolerances | None = None,
        label: str = "go",
        metric_scopes: Mapping[str, str] | None = None,
    ) -> None:
        self.metadata_path = Path(metadata_path)
        self.metrics_getter = dict(metrics_getter)
        self.tolerances = tolerances
        self.label = label
        self.metric_scopes = dict(metric_scopes or {})
        self.mismatches: list[str] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layout = MetadataLayout(self.metadata_path)
        rank, step = trainer.global_rank, trainer.global_step
        saved = read_json(layout.metadata(rank, step))
        if saved is None or saved.get("world_size", trainer.world_size) != trainer.world_size:
            # Saved by another world size: its world-size-independent values are rank 0's.
            # With the same world size, this rank's own file must exist.
            first = read_json(layout.metadata(0, step))
            changed = first is not None and first.get("world_size", trainer.world_size) != trainer.world_size
            saved = first if changed else None
        if saved is None:
            raise StopAndGoException(
                f"rank {rank} resumed at step {step}, but no checkpoint of that step was saved with metadata "
                f"({layout.metadata(rank, step)} is missing)"
            )
        resumed = collect_metrics(self.metrics_getter, trainer, pl_module)
        expected = saved["metrics"]
        changed: list[dict[str, Any]] = []
        if saved.get("world_size", trainer.world_size) != trainer.world_size:
            left_out = not_compared(list(expected), self.metric_scopes, at_resume=True)
            changed = [
                {"metric": m, "rank": rank, "saved": expected[m], "resumed": resumed.get(m), "why": why}
                for m, why in left_out.items()
            ]
            expected = {m: v for m, v in expected.items() if m not in left_out}
        checks = check_metrics(expected, resumed, rank, self.tolerances)
        write_json_atomic(
            layout.resume_check(self.label, rank),
            {
                "rank": rank,
                "label": self.label,
                "saved_step": saved["step"],
                "resumed_step": step,
                "saved_world_size": saved.get("world_size"),
                "world_size": trainer.world_size,
                "checkpoint": str(trainer.ckpt_path),
                "checks": [c.to_dict() for c in checks],
                "changed": changed,
            },
        )
        self.mismatches = [
            f"rank {c.rank} {c.metric}: saved {c.expected!r}, resumed {c.actual!r}" for c in checks if not c.ok
        ]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.mismatches:
            raise ResumeMismatchError("resume mismatch: " + "; ".join(self.mismatches))


class MetricsTrajectoryCallback(Callback):
    """Records the metrics after every optimizer step of this rank.

    Each entry is ``{"step": global_step, "metrics": {...}}`` with the metric functions'
    values plus ``train_loss`` (the step's loss), ``val_loss`` at validation steps and the
    step's batch facts (``workers.record.ledger.BatchRecorder``); every batch also goes to the
    sample ledger, flushed with the trajectory. State digests and norms are taken at the
    sampled depth (``workers.record.fingerprint``), and the same samples of every state tensor are
    appended to the rank's state record (``workers.record.state``).
    The trajectory is flushed atomically at every checkpoint save (complete steps only),
    validation end, train end and on an exception; in a stopping run it is flushed
    before the sentinel is written.
    """

    def __init__(
        self, metadata_path: str | os.PathLike[str], metrics_getter: Mapping[str, MetricsFn], phase: str
    ) -> None:
        self.metadata_path = Path(metadata_path)
        self.metrics_getter = dict(metrics_getter)
        self.phase = phase
        self.entries: list[dict[str, Any]] = []
        # Every batch trained, for the exactly-once ledger and the per-step batch facts.
        self.batches = BatchRecorder(metadata_path, phase)
        self.states: StateRecorder | None = None  # made at the first step, when the rank is known

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.batches.record(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.entries and self.entries[-1]["step"] == step:
            return  # a gradient-accumulation micro-batch: no optimizer step yet
        # Sampled depth: a bounded set of each tensor's elements, gathered once on the device
        # for the digests, the norms and the state record (for the per-tensor state check).
        with sampled():
            metrics = collect_metrics(self.metrics_getter, trainer, pl_module)
            if self.states is None:
                self.states = StateRecorder(self.metadata_path, self.phase, trainer.global_rank)
            self.states.record(step, state_groups(pl_module, trainer.optimizers))
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            metrics["train_loss"] = to_jsonable(loss)
        metrics.update(self.batches.step_facts(trainer, batch_idx))
        self.entries.append({"step": step, "metrics": metrics})

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is not None and self.entries and self.entries[-1]["step"] == trainer.global_step:
            self.entries[-1]["metrics"]["val_loss"] = to_jsonable(val_loss)
        self.flush(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.flush(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.flush(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Every rank's records up to a checkpoint are on disk before the checkpoint is, so a
        # kill after it (even during its write) loses nothing a resume would not redo.
        self.flush(trainer, complete_steps_only=True)

    def flush(self, trainer: pl.Trainer, complete_steps_only: bool = False) -> None:
        """Writes the trajectory and the ledger recorded so far.

        ``complete_steps_only`` leaves the step in progress out of the trajectory (its
        validation has not run yet); its batches stay in the ledger, since they trained.
        """
        rank = trainer.global_rank
        entries = self.entries
        if complete_steps_only and entries and entries[-1]["step"] == trainer.global_step:
            entries = entries[:-1]
        write_trajectory(self.metadata_path, self.phase, rank, entries)
        self.batches.flush(rank)
