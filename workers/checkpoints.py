"""Finding and vetting Lightning checkpoints before the sentinel may name them."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint file exists but is torn, unreadable or of the wrong step."""


def checkpoint_saved_at(trainer: pl.Trainer, step: int) -> Path | None:
    """The file a ``ModelCheckpoint`` of ``trainer`` saved at global step ``step``, if any."""
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        # Lightning records what it saved last; public API has no per-step lookup.
        if callback._last_global_step_saved == step:
            # Prefer the step's own file over ``last.ckpt``, which the next save overwrites.
            for path in (callback.best_model_path, callback._last_checkpoint_saved, callback.last_model_path):
                if path:
                    return Path(path)
    return None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_complete(path: Path, step: int) -> None:
    """Raises ``IncompleteCheckpointError`` unless ``path`` is a whole checkpoint of ``step``.

    A torch zip checkpoint ends with its central directory, so a truncated file fails
    ``zipfile``; loading with ``mmap`` then reads the metadata without the tensor bytes.
    The file is fsynced so that a node loss after the sentinel cannot tear it either.
    """
    if not path.is_file():
        raise IncompleteCheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise IncompleteCheckpointError(f"checkpoint {path} is not a complete torch zip file")
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:
        raise IncompleteCheckpointError(f"checkpoint {path} cannot be loaded: {err}") from err
    saved_step = state.get("global_step") if isinstance(state, dict) else None
    if saved_step != step:
        raise IncompleteCheckpointError(f"checkpoint {path} holds step {saved_step}, expected {step}")
    _fsync_file(path)
