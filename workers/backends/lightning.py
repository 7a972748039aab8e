"""The default backend: Lightning's ``ModelCheckpoint`` writing one ``.ckpt`` file per save."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from workers.backends.base import Backend
from workers.checkpoints import check_weights_only_loadable, checkpoint_step, step_in_name
from workers.torn_save import KillDuringSaveCallback


class LightningBackend(Backend):
    """Plain Lightning: any strategy whose ``CheckpointIO`` writes a torch zip file."""

    name = "lightning"

    def checkpoint_step(self, path: Path) -> int:
        return checkpoint_step(path)

    def verify_complete(self, path: Path, step: int) -> None:
        super().verify_complete(path, step)
        check_weights_only_loadable(path)  # a spec bug stops here, not in go
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def candidates(self, directory: Path) -> list[Path]:
        return sorted(directory.glob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", step_in_name(p)), reverse=True)

    def checkpoint_callback(self, dirpath: Path, every_n_train_steps: int) -> pl.Callback:
        return ModelCheckpoint(dirpath=dirpath, save_last=True, save_top_k=-1, every_n_train_steps=every_n_train_steps)

    def kill_during_save_callback(
        self, marker: Path, wait_for_kill_s: float, before_tear: Callable[[pl.Trainer], None]
    ) -> pl.Callback:
        return KillDuringSaveCallback(marker, wait_for_kill_s, before_tear=before_tear)
