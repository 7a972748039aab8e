"""A callback that reports each rank's step to the orchestrator's live view.

It writes ``orchestrator.protocol.progress_path(RUN_DIR, label, rank)`` after optimizer
steps, at most every ``min_interval_s`` seconds (an fsynced write per step would slow
small, fast specs), and always before a validation and at train end, so the step a stop
run is killed at is on disk. Outside an orchestrator run (no run dir in the
environment) it does nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from orchestrator.protocol import ENV_RUN_DIR, progress_path, write_json_atomic


class ProgressCallback(Callback):
    """Writes this rank's current global step for the phase ``label``.

    Args:
        label: the phase label (``stop``, ``go1`` ..., ``go``, ``continuous``).
        min_interval_s: the least time between two writes during training.
    """

    def __init__(self, label: str, min_interval_s: float = 0.2) -> None:
        self.label = label
        self.min_interval_s = min_interval_s
        self.run_dir = os.environ.get(ENV_RUN_DIR)
        self._written_step: int | None = None
        self._last_write = 0.0
        # When this phase's first optimizer step ended (the report's kill -> go latency).
        self._first_step_time: float | None = None

    def _write(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        if self.run_dir is None or step == self._written_step:
            return
        max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        write_json_atomic(
            progress_path(self.run_dir, self.label, trainer.global_rank),
            {
                "rank": trainer.global_rank,
                "step": step,
                "max_steps": max_steps,
                "time": time.time(),
                "first_step_time": self._first_step_time,
            },
        )
        self._written_step = step
        self._last_write = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)  # a resumed phase starts at its checkpoint's step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._first_step_time is None:
            self._first_step_time = time.time()
            self._write(trainer)
        elif time.monotonic() - self._last_write >= self.min_interval_s:
            self._write(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)
