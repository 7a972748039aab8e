"""Lightning checkpoints: what ``ModelCheckpoint`` saved, and whether a ``.ckpt`` file is whole.

Lightning writes ``last.ckpt`` in place (no temporary file and rename), so a kill during
that write leaves a torn file where the previous good one was. A resume must therefore
check a checkpoint before trusting it, and fall back to the newest complete one
(``Backend.newest_complete_checkpoint``). The ``ModelCheckpoint`` lookups serve every
backend whose checkpoint callback is a ``ModelCheckpoint`` (NeMo's included).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from workers.backends.base import IncompleteCheckpointError, TornCheckpointError

_STEP_IN_NAME = re.compile(r"step=(\d+)")

__all__ = [
    "IncompleteCheckpointError",
    "TornCheckpointError",
    "checkpoint_interval",
    "checkpoint_saved_at",
    "checkpoint_step",
    "last_saved_step",
    "step_in_name",
]


def step_in_name(path: Path) -> int:
    """The step in a checkpoint's name (``...step=12...``), or -1 without one."""
    match = _STEP_IN_NAME.search(path.name)
    return int(match.group(1)) if match else -1


def checkpoint_saved_at(trainer: pl.Trainer, step: int) -> Path | None:
    """The checkpoint a ``ModelCheckpoint`` of ``trainer`` saved at global step ``step``, if any.

    The step's own file is preferred over ``last``, which the next save overwrites. With
    a monitored metric, ``best_model_path`` may be an older step, so a path counts as the
    step's own only when its name carries ``step=<step>``.
    """
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        # Lightning records what it saved last; public API has no per-step lookup.
        if callback._last_global_step_saved != step:
            continue
        saved = [callback._last_checkpoint_saved, callback.best_model_path, *callback.best_k_models]
        own = [Path(p) for p in saved if p and step_in_name(Path(p)) == step and "last" not in Path(p).name]
        if own:
            return own[0]
        for path in (callback.last_model_path, callback._last_checkpoint_saved):
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
