"""The seed-compatible ``StopAndGoHarness`` for Lightning training, one phase per process.

A spec subclasses ``StopAndGoHarness`` and implements ``setup_model`` and
``setup_trainer_and_strategy`` exactly as with BioNeMo's harness. The orchestrator runs
``stop()``, ``go()`` and ``continuous()`` in separate torchrun launches; ``run_test()``
still runs stop then go in one process for quick local use.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from enum import Enum
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from orchestrator.judge.compare import tolerances_from_env
from orchestrator.protocol import PhasePlan, saving_marker_path_for, wait_for_kill_s_from_env
from workers.backends.base import Backend
from workers.backends.lightning import LightningBackend
from workers.callbacks import (
    MetadataSaveCallback,
    MetricsTrajectoryCallback,
    RaiseAfterMetadataCallback,
    StopAndGoException,
    TestCheckpointIntegrityCallback,
    flush_trajectories,
)
from workers.metrics import MetricsDict, MetricsFn, builtin_metrics
from workers.progress import ProgressCallback


class Mode(str, Enum):
    """The phase a harness is set up for. ``Mode.GO`` is an alias of ``Mode.RESUME``.

    Members are strings, so seed code comparing ``mode == "stop"`` or ``mode == "go"``
    keeps working.
    """

    STOP = "stop"
    RESUME = "go"
    GO = "go"
    CONTINUOUS = "continuous"


class StopAndGoHarness(ABC):
    """Abstract base class for a stop-and-go harness.

    Stop trains until the first checkpoint that coincides with a validation, saves each
    rank's metrics, writes the sentinel and waits to be killed. Go, in a fresh process,
    resumes from the last checkpoint and checks every saved metric on every rank.
    Continuous trains the same steps without interruption as the reference.

    Args:
        root_dir: the directory for checkpoints and metadata.
        val_check_interval: validation and checkpoint interval, in optimizer steps.
        exp_name: the experiment name; metadata lives in ``root_dir / exp_name``.
        extra_metrics_dict: more metric functions ``fn(trainer, module)`` by name, on top
            of ``global_step`` and ``learning_rate``.

    Attributes:
        metric_tolerances: per-metric ``(rtol, atol)`` for float comparisons; metrics not
            listed use ``orchestrator.judge.compare.DEFAULT_RTOL`` / ``DEFAULT_ATOL``.
        final_step: the global step at the end of ``go()`` or ``continuous()``.
        plan: the orchestrator's plan of the phase being run (label, kill point, ...).
        backend: the training stack's checkpoint format and fit (``workers.backends``);
            a spec sets it as a class attribute. Lightning's ``.ckpt`` files by default.
        supports_world_size_change: a spec sets it to True when it can resume with
            another number of ranks (``--go-nproc-per-node``) holding the global batch
            constant; without it such a resume is refused.
        metric_scopes: the scope of each extra metric (``orchestrator.judge.metric_scopes``);
            undeclared extra metrics are per rank.
    """

    backend: Backend = LightningBackend()
    supports_world_size_change: bool = False

    def __init__(
        self,
        root_dir: Path | str = Path("./stop_and_go"),
        val_check_interval: int = 2,
        exp_name: str = "stop_and_go_harness",
        extra_metrics_dict: dict[str, MetricsFn] | None = None,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.exp_name = exp_name
        self.metadata_dir = self.root_dir / self.exp_name
        self.checkpoint_dir = self.metadata_dir / "checkpoints"
        self.metrics_getter: dict[str, MetricsFn] = dict(**self.get_default_metrics_dict())
        if extra_metrics_dict is not None:
            self.metrics_getter.update(extra_metrics_dict)
        self.val_check_interval = val_check_interval
        self.metric_tolerances: dict[str, tuple[float, float]] = {}
        self.metric_scopes: dict[str, str] = {}
        self.final_step: int | None = None
        # Set by the worker entry from the orchestrator's plan; None outside an orchestrator.
        self.plan: PhasePlan | None = None

    @abstractmethod
    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, Any]:
        """Builds the module, the datamodule and (optionally, else None) an optimizer config.

        Use the same code path for every mode unless a test needs otherwise.
        """

    @abstractmethod
    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, MetricsFn]) -> pl.Trainer:
        """Builds the trainer for ``mode``; pass ``callbacks=self.get_callbacks(mode)``."""

    def get_default_metrics_dict(self) -> MetricsDict:
        """The metrics every harness records: ``global_step``, ``learning_rate`` and every
        other built-in metric of ``workers.metrics.builtin_metrics`` (all on by default)."""
        return builtin_metrics()  # type: ignore[return-value]

    def checkpoint_callback(self) -> pl.Callback:
        """The checkpoint callback of every mode: every ``val_check_interval`` steps, plus last."""
        return self.backend.checkpoint_callback(self.checkpoint_dir, self.val_check_interval)

    def get_callbacks(self, mode: Mode | str) -> list[pl.Callback]:
        """The callbacks for ``mode``; extend with ``super().get_callbacks(mode) + [...]``.

        Raises:
            ValueError: if ``mode`` is not a ``Mode``.
        """
        mode = Mode(mode)
        plan = self.plan or PhasePlan(label=mode.value, mode=mode.value)
        callbacks: list[pl.Callback] = [
            MetricsTrajectoryCallback(self.metadata_dir, self.metrics_getter, phase=plan.label),
            ProgressCallback(plan.label),  # per-step progress for the live view
        ]
        if mode is Mode.RESUME:
            callbacks.append(
                TestCheckpointIntegrityCallback(
                    metadata_path=self.metadata_dir,
                    metrics_getter=self.metrics_getter,
                    tolerances={**self.metric_tolerances, **tolerances_from_env()},
                    label=plan.label,
                    metric_scopes=self.metric_scopes,
                )
            )
        if mode is Mode.STOP or (mode is Mode.RESUME and plan.stop_after_resume):
            callbacks.append(MetadataSaveCallback(metadata_path=self.metadata_dir, metrics_getter=self.metrics_getter))
            if plan.kill_during_save:
                callbacks.append(
                    self.backend.kill_during_save_callback(
                        saving_marker_path_for(self.metadata_dir),
                        wait_for_kill_s_from_env(),
                        before_tear=lambda trainer: flush_trajectories(trainer, complete_steps_only=True),
                    )
                )
            else:
                callbacks.append(
                    RaiseAfterMetadataCallback(
                        metadata_path=self.metadata_dir,
                        kill_at=plan.kill_at,
                        label=plan.label,
                        backend=self.backend,
                        later_epoch=plan.stop_in_later_epoch,
                    )
                )
        callbacks.append(self.checkpoint_callback())
        return callbacks

    def resume_checkpoint_path(self) -> Path:
        """The checkpoint to resume from: ``last`` if complete, else the newest complete one.

        Raises:
            TornCheckpointError: when no complete checkpoint is left (or none exists).
        """
        path, step, skipped = self.backend.newest_complete_checkpoint(self.checkpoint_dir)
        for reason in skipped:
            rank_zero_warn(f"stop-and-go: skipping a checkpoint that cannot be resumed from: {reason}")
        rank_zero_info(f"stop-and-go: resuming from {path} (step {step})")
        return path

    def stop(self) -> None:
        """Trains until the first checkpointed validation, then stops (or is killed)."""
        model, data, opt = self.setup_model(Mode.STOP)
        trainer = self.setup_trainer_and_strategy(Mode.STOP, self.metrics_getter)
        try:
            self.backend.fit(trainer, model, data, opt, ckpt_path=None)
        except StopAndGoException:
            return
        raise StopAndGoException("the stop run finished training without reaching a checkpointed validation")

    def go(self) -> None:
        """Resumes from the last checkpoint in this process and verifies the saved metrics.

        In a resumed phase planned to stop again (``--cycles``), it stops like ``stop()``.
        """
        model, data, opt = self.setup_model(Mode.RESUME)
        trainer = self.setup_trainer_and_strategy(Mode.RESUME, self.metrics_getter)
        stops_again = self.plan is not None and self.plan.stop_after_resume
        try:
            self.backend.fit(trainer, model, data, opt, ckpt_path=self.resume_checkpoint_path())
        except StopAndGoException:
            if stops_again:
                return
            raise
        self.final_step = trainer.global_step
        if stops_again:
            raise StopAndGoException(
                f"the resumed run finished training at step {trainer.global_step} without stopping"
            )

    def continuous(self) -> None:
        """Trains all steps without interruption: the reference for go's trajectory."""
        model, data, opt = self.setup_model(Mode.CONTINUOUS)
        trainer = self.setup_trainer_and_strategy(Mode.CONTINUOUS, self.metrics_getter)
        self.backend.fit(trainer, model, data, opt, ckpt_path=None)
        self.final_step = trainer.global_step

    def run_test(self) -> None:
        """Executes stop then go in this process (the orchestrator uses separate processes)."""
        self.stop()
        self.go()


def torchrun_trainer_kwargs() -> dict[str, Any]:
    """Trainer arguments matching the torchrun launch: devices, nodes and strategy.

    On CPU, DDP uses gloo; on GPU, NCCL. Outside torchrun this is one process.
    """
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return {
        "accelerator": "auto",
        "devices": local_world,
        "num_nodes": max(1, world // local_world),
        "strategy": "ddp" if world > 1 else "auto",
    }
