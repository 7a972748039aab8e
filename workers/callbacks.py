"""Lightning callbacks of the stop-and-go harness, with the seed's names.

- ``MetadataSaveCallback`` (stop): saves every rank's metrics at the first validation end
  whose step has a checkpoint.
- ``RaiseAfterMetadataCallback`` (stop): once the metadata is saved and the checkpoint is
  complete on disk, rank 0 writes the sentinel; then every rank waits to be killed by the
  orchestrator and raises ``StopAndGoException`` if that does not happen in time.
- ``TestCheckpointIntegrityCallback`` (go): compares each rank's resumed metrics with the
  saved ones at train start, writes the comparison, and fails the run at train end.
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

from orchestrator.compare import Tolerances, check_metrics
from orchestrator.protocol import (
    MetadataLayout,
    Sentinel,
    read_json,
    sentinel_path_for,
    wait_for_kill_s_from_env,
    write_json_atomic,
)
from workers.checkpoints import checkpoint_saved_at, verify_complete
from workers.metrics import MetricsFn, collect_metrics, to_jsonable


class StopAndGoException(Exception):
    """Raised to end the stop run once its checkpoint and metadata are saved."""


class ResumeMismatchError(AssertionError):
    """The resumed state differs from the state saved at the stop checkpoint."""


class MetadataSaveCallback(Callback):
    """Saves the metrics of every rank at the stop checkpoint.

    Args:
        metadata_path: the harness's metadata directory (``root_dir / exp_name``).
        metrics_getter: metric name to ``fn(trainer, module)``.
    """

    def __init__(self, metadata_path: str | os.PathLike[str], metrics_getter: Mapping[str, MetricsFn]) -> None:
        self.metadata_path = Path(metadata_path)
        self.metrics_getter = dict(metrics_getter)
        self.called = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.called or trainer.sanity_checking:
            return
        # The saved metrics must describe the state the checkpoint holds: wait for a
        # validation that falls on a checkpoint step.
        if checkpoint_saved_at(trainer, trainer.global_step) is None:
            return
        payload = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "step": trainer.global_step,
            "pid": os.getpid(),
            "metrics": collect_metrics(self.metrics_getter, trainer, pl_module),
        }
        write_json_atomic(MetadataLayout(self.metadata_path).metadata(trainer.global_rank), payload)
        self.called = True


class RaiseAfterMetadataCallback(Callback):
    """Writes the sentinel after the metadata and checkpoint are complete, then stops.

    Args:
        metadata_path: the harness's metadata directory.
        wait_for_kill_s: seconds to wait for the orchestrator's kill after the sentinel
            before raising; ``None`` reads the orchestrator's setting from the environment
            (0 without an orchestrator, which raises at once as the seed did).
        sentinel_path: where to write the sentinel; ``None`` uses the orchestrator's run
            directory when set, else the metadata directory.
    """

    def __init__(
        self,
        metadata_path: str | os.PathLike[str],
        wait_for_kill_s: float | None = None,
        sentinel_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.metadata_path = Path(metadata_path)
        self.wait_for_kill_s = wait_for_kill_s
        self.sentinel_path = Path(sentinel_path) if sentinel_path else None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if not MetadataLayout(self.metadata_path).metadata(trainer.global_rank).exists():
            return
        step = trainer.global_step
        # Every rank has saved its metadata (and Trainer.save_checkpoint ends in a barrier).
        trainer.strategy.barrier("stop_and_go_metadata_saved")
        if trainer.is_global_zero:
            checkpoint = checkpoint_saved_at(trainer, step)
            if checkpoint is None:
                raise StopAndGoException(f"no checkpoint was saved at step {step}")
            verify_complete(checkpoint, step)
            sentinel = Sentinel(
                step=step,
                checkpoint_path=str(checkpoint.resolve()),
                metadata_dir=str(self.metadata_path.resolve()),
                world_size=trainer.world_size,
                pid=os.getpid(),
            )
            write_json_atomic(self.sentinel_path or sentinel_path_for(self.metadata_path), sentinel.to_dict())
        self._wait_to_be_killed(step)

    def _wait_to_be_killed(self, step: int) -> None:
        timeout = self.wait_for_kill_s if self.wait_for_kill_s is not None else wait_for_kill_s_from_env()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise StopAndGoException(f"stopped after the checkpoint of step {step} (not killed within {timeout:g}s)")


class TestCheckpointIntegrityCallback(Callback):
    """Checks, on every rank, that the resumed state equals the state saved at the stop.

    The comparison is written at train start (so the orchestrator has it even if the run
    dies later); a mismatch fails the run at train end, after the go run has recorded its
    whole trajectory.
    """

    __test__ = False  # not a pytest test class, despite the seed's name

    def __init__(
        self,
        metadata_path: str | os.PathLike[str],
        metrics_getter: Mapping[str, MetricsFn],
        tolerances: Tolerances | None = None,
    ) -> None:
        self.metadata_path = Path(metadata_path)
        self.metrics_getter = dict(metrics_getter)
        self.tolerances = tolerances
        self.mismatches: list[str] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        layout = MetadataLayout(self.metadata_path)
        rank = trainer.global_rank
        saved = read_json(layout.metadata(rank))
        if saved is None:
            raise StopAndGoException(f"rank {rank}: no stop metadata at {layout.metadata(rank)}")
        resumed = collect_metrics(self.metrics_getter, trainer, pl_module)
        checks = check_metrics(saved["metrics"], resumed, rank, self.tolerances)
        write_json_atomic(
            layout.resume_check(rank),
            {
                "rank": rank,
                "saved_step": saved["step"],
                "resumed_step": trainer.global_step,
                "checks": [c.to_dict() for c in checks],
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
    values plus ``train_loss`` (the step's loss) and ``val_loss`` at validation steps.
    The trajectory is flushed atomically at every validation end, at train end and on
    an exception; in the stop run it is flushed before the sentinel is written.
    """

    def __init__(
        self, metadata_path: str | os.PathLike[str], metrics_getter: Mapping[str, MetricsFn], phase: str
    ) -> None:
        self.metadata_path = Path(metadata_path)
        self.metrics_getter = dict(metrics_getter)
        self.phase = phase
        self.entries: list[dict[str, Any]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.entries and self.entries[-1]["step"] == step:
            return  # a gradient-accumulation micro-batch: no optimizer step yet
        metrics = collect_metrics(self.metrics_getter, trainer, pl_module)
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            metrics["train_loss"] = to_jsonable(loss)
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

    def flush(self, trainer: pl.Trainer) -> None:
        """Writes the trajectory recorded so far."""
        rank = trainer.global_rank
        write_json_atomic(
            MetadataLayout(self.metadata_path).trajectory(self.phase, rank),
            {"rank": rank, "phase": self.phase, "entries": self.entries},
        )
