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
from lightning.pytorch.callbacks import ModelCheckpoint

from workers.callbacks import (
    MetadataSaveCallback,
    MetricsTrajectoryCallback,
    RaiseAfterMetadataCallback,
    StopAndGoException,
    TestCheckpointIntegrityCallback,
)
from workers.metrics import MetricsDict, MetricsFn, get_global_step, get_learning_rate


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
            listed use ``orchestrator.compare.DEFAULT_RTOL`` / ``DEFAULT_ATOL``.
        final_step: the global step at the end of ``go()`` or ``continuous()``.
    """

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
        self.final_step: int | None = None

    @abstractmethod
    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, Any]:
        """Builds the module, the datamodule and (optionally, else None) an optimizer config.

        Use the same code path for every mode unless a test needs otherwise.
        """

    @abstractmethod
    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, MetricsFn]) -> pl.Trainer:
        """Builds the trainer for ``mode``; pass ``callbacks=self.get_callbacks(mode)``."""

    def get_default_metrics_dict(self) -> MetricsDict:
        """The metrics every harness records: ``global_step`` and ``learning_rate``."""
        return {"global_step": get_global_step, "learning_rate": get_learning_rate}

    def checkpoint_callback(self) -> ModelCheckpoint:
        """The checkpoint callback of every mode: every ``val_check_interval`` steps, plus last."""
        return ModelCheckpoint(
            dirpath=self.checkpoint_dir,
            save_last=True,
            save_top_k=-1,
            every_n_train_steps=self.val_check_interval,
        )

    def get_callbacks(self, mode: Mode | str) -> list[pl.Callback]:
        """The callbacks for ``mode``; extend with ``super().get_callbacks(mode) + [...]``.

        Raises:
            ValueError: if ``mode`` is not a ``Mode``.
        """
        mode = Mode(mode)
        trajectory = MetricsTrajectoryCallback(self.metadata_dir, self.metrics_getter, phase=mode.value)
        if mode is Mode.STOP:
            return [
                trajectory,
                MetadataSaveCallback(metadata_path=self.metadata_dir, metrics_getter=self.metrics_getter),
                RaiseAfterMetadataCallback(metadata_path=self.metadata_dir),
                self.checkpoint_callback(),
            ]
        if mode is Mode.RESUME:
            return [
                trajectory,
                TestCheckpointIntegrityCallback(
                    metadata_path=self.metadata_dir,
                    metrics_getter=self.metrics_getter,
                    tolerances=self.metric_tolerances,
                ),
                self.checkpoint_callback(),
            ]
        return [trajectory, self.checkpoint_callback()]

    def resume_checkpoint_path(self) -> Path:
        """The checkpoint go resumes from: ``last.ckpt`` in the checkpoint directory.

        Raises:
            FileNotFoundError: when there is nothing to resume from.
        """
        last = self.checkpoint_dir / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {last} does not exist")
        return last

    def stop(self) -> None:
        """Trains until the first checkpointed validation, then stops (or is killed)."""
        model, data, _ = self.setup_model(Mode.STOP)
        trainer = self.setup_trainer_and_strategy(Mode.STOP, self.metrics_getter)
        try:
            trainer.fit(model, datamodule=data)
        except StopAndGoException:
            return
        raise StopAndGoException("the stop run finished training without reaching a checkpointed validation")

    def go(self) -> None:
        """Resumes from the last checkpoint in this process and verifies the saved metrics."""
        model, data, _ = self.setup_model(Mode.RESUME)
        trainer = self.setup_trainer_and_strategy(Mode.RESUME, self.metrics_getter)
        trainer.fit(model, datamodule=data, ckpt_path=self.resume_checkpoint_path())
        self.final_step = trainer.global_step

    def continuous(self) -> None:
        """Trains all steps without interruption: the reference for go's trajectory."""
        model, data, _ = self.setup_model(Mode.CONTINUOUS)
        trainer = self.setup_trainer_and_strategy(Mode.CONTINUOUS, self.metrics_getter)
        trainer.fit(model, datamodule=data)
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
