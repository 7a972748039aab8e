"""Mutant: an incomplete checkpoint is picked up as the latest one.

Bug class: NeMo PR 7952 (an unfinished checkpoint taken as the latest). When the stop run
is killed, a later checkpoint is still being written: its weights are on disk, its
optimizer moments (written last) are not. The resume logic takes the newest checkpoint
file without checking that it is complete, and resumes from it. Caught by
``optimizer_state_digest`` at the resume point.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from harness_specs.tiny_lightning import TinyLightningHarness
from workers import Mode
from workers.checkpoints import checkpoint_saved_at

CAUGHT_BY = "optimizer_state_digest"
EXPECTED_CAUSE = "incomplete_checkpoint"
CAUGHT_AT = "resume"
BUG_CLASS = "an incomplete checkpoint picked up as the latest (NeMo PR 7952)"

UNFINISHED_NAME = "epoch=0-step=2-unfinished.ckpt"


class UnfinishedSaveCallback(Callback):
    """Leaves the save that was in flight at the kill: weights written, moments not yet."""

    def __init__(self) -> None:
        self.done = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.done or trainer.sanity_checking or not trainer.is_global_zero:
            return
        saved = checkpoint_saved_at(trainer, trainer.global_step)
        if saved is None:
            return
        state = torch.load(saved, map_location="cpu", weights_only=False)
        for optimizer_state in state["optimizer_states"]:
            optimizer_state["state"] = {}
        unfinished = Path(saved).with_name(UNFINISHED_NAME)
        torch.save(state, unfinished)
        later = time.time() + 1
        os.utime(unfinished, (later, later))
        self.done = True


class IncompleteCheckpointHarness(TinyLightningHarness):
    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "incomplete_checkpoint")
        super().__init__(root_dir, **kwargs)

    def get_callbacks(self, mode: Mode | str) -> list[pl.Callback]:
        callbacks = super().get_callbacks(mode)
        if Mode(mode) is Mode.STOP:
            callbacks.insert(0, UnfinishedSaveCallback())  # before the sentinel is written
        return callbacks

    def resume_checkpoint_path(self) -> Path:
        # The bug: the newest file wins, complete or not.
        return max(self.checkpoint_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
