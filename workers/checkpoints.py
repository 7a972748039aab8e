"""Finding and vetting Lightning checkpoints: what the sentinel may name, what go may load.

Lightning writes ``last.ckpt`` in place (no temporary file and rename), so a kill during
that write leaves a torn file where the previous good one was. A resume must therefore
check a checkpoint before trusting it, and fall back to the newest complete one.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint file exists but is torn, unreadable or of the wrong step."""


class TornCheckpointError(RuntimeError):
    """No complete checkpoint is left to resume from."""


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


def checkpoint_interval(trainer: pl.Trainer) -> int:
    """Steps between checkpoints: the smallest ``every_n_train_steps``, else the validation interval."""
    intervals = [
        cb._every_n_train_steps
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint) and cb._every_n_train_steps
    ]
    return min(intervals) if intervals else max(1, int(trainer.val_check_batch))


def last_saved_step(trainer: pl.Trainer) -> int | None:
    """The global step of the latest checkpoint this process saved, if it saved one."""
    steps = [
        cb._last_global_step_saved
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint) and cb._last_checkpoint_saved
    ]
    return max(steps) if steps else None


def checkpoint_step(path: Path) -> int:
    """The global step stored in a checkpoint; raises ``IncompleteCheckpointError`` if torn.

    A torch zip checkpoint ends with its central directory, so a truncated file fails
    ``zipfile``; loading with ``mmap`` then reads the metadata without the tensor bytes.
    """
    if not path.is_file():
        raise IncompleteCheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise IncompleteCheckpointError(f"checkpoint {path} is torn (not a complete torch zip file)")
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # any load failure means "not usable"
        raise IncompleteCheckpointError(f"checkpoint {path} cannot be loaded: {err}") from err
    step = state.get("global_step") if isinstance(state, dict) else None
    if not isinstance(step, int):
        raise IncompleteCheckpointError(f"checkpoint {path} has no global_step")
    return step


def verify_complete(path: Path, step: int) -> None:
    """Raises ``IncompleteCheckpointError`` unless ``path`` is a whole checkpoint of ``step``.

    The file is fsynced too, so that a node loss after the sentinel cannot tear it.
    """
    saved_step = checkpoint_step(path)
    if saved_step != step:
        raise IncompleteCheckpointError(f"checkpoint {path} holds step {saved_step}, expected {step}")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_STEP_IN_NAME = re.compile(r"step=(\d+)")


def newest_complete_checkpoint(directory: Path) -> tuple[Path, int, list[str]]:
    """The checkpoint to resume from: ``last.ckpt`` if whole, else the newest whole one.

    Returns the path, its step, and one line for each newer candidate that was skipped
    because it is torn. Raises ``TornCheckpointError`` when no whole checkpoint is left.
    """
    candidates = sorted(
        directory.glob("*.ckpt"),
        key=lambda p: (p.name == "last.ckpt", int(m.group(1)) if (m := _STEP_IN_NAME.search(p.name)) else -1),
        reverse=True,
    )
    skipped: list[str] = []
    for path in candidates:
        try:
            return path, checkpoint_step(path), skipped
        except IncompleteCheckpointError as err:
            skipped.append(str(err))
    if not candidates:
        raise TornCheckpointError(f"no checkpoint to resume from in {directory}")
    raise TornCheckpointError(f"torn checkpoint: no complete checkpoint in {directory}: " + "; ".join(skipped))
