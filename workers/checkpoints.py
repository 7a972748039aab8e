"""Lightning checkpoints: what ``ModelCheckpoint`` saved, and whether a ``.ckpt`` file is whole.

Lightning writes ``last.ckpt`` in place (no temporary file and rename), so a kill during
that write leaves a torn file where the previous good one was. A resume must therefore
check a checkpoint before trusting it, and fall back to the newest complete one
(``Backend.newest_complete_checkpoint``). The ``ModelCheckpoint`` lookups serve every
backend whose checkpoint callback is a ``ModelCheckpoint`` (NeMo's included).
"""

from __future__ import annotations

import contextlib
import os
import re
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from orchestrator.protocol import ENV_RUN_DIR, RunLayout, write_json_atomic
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


def steps_per_epoch(trainer: pl.Trainer) -> int | None:
    """Optimizer steps in one training epoch (micro-batches over ``accumulate_grad_batches``).

    None when the train loader has no length (a stream, an ``IterableDataset``): the
    epochs' lengths are then known only as they end.
    """
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:
        return None
    accumulate = max(1, int(trainer.accumulate_grad_batches))
    return max(1, -(-batches // accumulate))


def last_training_step(trainer: pl.Trainer) -> int | None:
    """The global step training ends at (``max_steps``, else the epochs' steps); None when not known.

    It is not known when the run is bounded by epochs (or not at all) and the train loader
    has no length: Lightning's ``estimated_stepping_batches`` then returns ``max_steps``
    (-1) or infinity, neither of which is a step.
    """
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    estimated = trainer.estimated_stepping_batches
    if estimated == float("inf") or estimated < 0:
        return None
    return int(estimated)


def describe_last_step(trainer: pl.Trainer) -> str:
    """Why the last step is not known, for messages that would otherwise name one."""
    bound = f"max_epochs={trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else "no max_epochs"
    return f"not known before training: the train loader has no length and the run is bounded by {bound}, no max_steps"


def checkpoint_epoch(trainer: pl.Trainer, step: int) -> int | None:
    """The epoch during which the checkpoint of ``step`` was saved (an epoch's last step is its own).

    None when the steps per epoch are not known (see ``SavedEpochs`` for those runs).
    """
    per_epoch = steps_per_epoch(trainer)
    if per_epoch is None:
        return None
    return (step - 1) // per_epoch if step > 0 else 0


def position_now(trainer: pl.Trainer, at_start: bool = False) -> tuple[int, int, int]:
    """``(epoch, resume epoch, resume batch in epoch)`` of a checkpoint saved now (or resumed, ``at_start``).

    Read from the fit loop, so it holds without a loader length: the epoch in progress,
    and where a resume from this state starts (the next epoch's batch 0 after an epoch's
    last batch, which Lightning tells a stream by fetching one batch ahead).
    """
    progress = trainer.fit_loop.epoch_loop.batch_progress
    epoch = trainer.current_epoch
    if progress.is_last_batch:
        # At a resumed train start the fit loop has already moved on to the next epoch.
        return (epoch, epoch, 0) if at_start else (epoch, epoch + 1, 0)
    # Batches of this epoch done when the checkpoint was saved (restored as saved at train start).
    return epoch, epoch, progress.current.processed


class SavedEpochs:
    """Where each checkpoint of this process was saved, for runs whose epochs have no known length.

    ``record`` is called when a checkpoint is saved (and at a resumed train start, for the
    checkpoint resumed from); ``epoch_of`` and ``position`` fall back on it where
    ``steps_per_epoch`` is None.
    """

    def __init__(self) -> None:
        self.saved: dict[int, tuple[int, int, int]] = {}

    def record(self, trainer: pl.Trainer, at_start: bool = False) -> None:
        """Records where the checkpoint of the current step is (``position_now``)."""
        self.saved.setdefault(trainer.global_step, position_now(trainer, at_start))

    def epoch_of(self, trainer: pl.Trainer, step: int) -> int:
        """The epoch the checkpoint of ``step`` was saved in (the current one if it was not recorded)."""
        known = checkpoint_epoch(trainer, step)
        if known is not None:
            return known
        return self.saved[step][0] if step in self.saved else trainer.current_epoch

    def position(self, step: int) -> tuple[int, int] | None:
        """``(epoch, batch in epoch)`` a resume from the checkpoint of ``step`` starts at, if recorded."""
        return self.saved[step][1:] if step in self.saved else None


def checkpoint_steps(trainer: pl.Trainer) -> list[int] | None:
    """Every step before the last at which a ``ModelCheckpoint`` of ``trainer`` will save.

    None when the last step is not known (a stream bounded by epochs): the list has no end.
    """
    last = last_training_step(trainer)
    if last is None:
        return None
    per_epoch = steps_per_epoch(trainer)
    steps: set[int] = set()
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint):
            continue
        if cb._every_n_train_steps:
            steps.update(range(cb._every_n_train_steps, min(last, 10_000_000), cb._every_n_train_steps))
        elif per_epoch and (cb._every_n_epochs or 0) > 0:
            every = per_epoch * cb._every_n_epochs
            steps.update(range(every, min(last, 10_000_000), every))
    return sorted(steps)


def validates_on_checkpoint_steps(trainer: pl.Trainer) -> bool:
    """Whether validations (by steps) fall on checkpoint steps: the seed's stop rule applies."""
    val_batches = trainer.val_check_batch
    if not isinstance(val_batches, int) or trainer.check_val_every_n_epoch not in (None, 1):
        return False
    accumulate = max(1, int(trainer.accumulate_grad_batches))
    val_every = max(1, val_batches // accumulate)
    intervals = [
        cb._every_n_train_steps
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint) and cb._every_n_train_steps
    ]
    return any(val_every % interval == 0 for interval in intervals)


def _later_epoch_checkpoints(trainer: pl.Trainer, epoch: int) -> list[int] | None:
    """Checkpoint steps of epochs after ``epoch``; None when they cannot be told before training."""
    if steps_per_epoch(trainer) is not None:
        steps = checkpoint_steps(trainer)
        if steps is not None:
            return [c for c in steps if (checkpoint_epoch(trainer, c) or 0) > epoch]
    # Epochs of unknown length: none lies ahead only where ``epoch`` is the last one.
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs > 0 and epoch >= max_epochs - 1:
        return []
    return None


def resume_point(trainer: pl.Trainer, step: int, saved: tuple[int, int] | None = None) -> dict[str, object]:
    """What a resume from the checkpoint of ``step`` starts from, for the coverage report.

    Keys: ``step``, ``epoch`` and ``batch_in_epoch`` the resume starts at,
    ``batches_per_epoch``, ``steps_per_epoch``, ``accumulate_grad_batches``,
    ``val_every_steps``, ``last_step`` and ``later_epoch_checkpoints`` (the checkpoint
    steps of epochs after the resumed one, before the last step). Without a loader length
    ``saved`` (``SavedEpochs.position``) gives the epoch and batch; the steps per epoch,
    the last step and the later checkpoints are then None (not known), except that no
    checkpoint lies after the last of ``max_epochs``.
    """
    per_epoch = steps_per_epoch(trainer)
    accumulate = max(1, int(trainer.accumulate_grad_batches))
    if per_epoch is not None:
        epoch, batch = step // per_epoch, (step - step // per_epoch * per_epoch) * accumulate
    elif saved is not None:
        epoch, batch = saved
    else:  # before the checkpoint exists: its epoch is this one or a later one
        epoch, batch = trainer.current_epoch, None
    val_batches = trainer.val_check_batch
    return {
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch,
        "batches_per_epoch": trainer.num_training_batches if isinstance(trainer.num_training_batches, int) else None,
        "steps_per_epoch": per_epoch,
        "accumulate_grad_batches": accumulate,
        "val_every_steps": max(1, val_batches // accumulate) if isinstance(val_batches, int) else None,
        "last_step": last_training_step(trainer),
        "later_epoch_checkpoints": _later_epoch_checkpoints(trainer, epoch),
    }


def publish_outlook(trainer: pl.Trainer, label: str, first_stop: int | None) -> None:
    """Tells the orchestrator, at a stopping phase's train start, what lies ahead of its stop.

    The default scenario's ``go1`` runs only where the stop's resume point has a checkpoint
    in a later epoch; a stop at ``first_stop`` or after has no more of them than one at
    ``first_stop``. Rank 0 writes them (``RunLayout.outlook``; ``None``: not known, as for
    a stream whose epochs have no length yet), so that the orchestrator pre-warms ``go1``
    only where it can run (not in a one-epoch run).
    """
    run_dir = os.environ.get(ENV_RUN_DIR)
    if run_dir is None or trainer.global_rank != 0:
        return
    later = resume_point(trainer, first_stop)["later_epoch_checkpoints"] if first_stop is not None else None
    write_json_atomic(RunLayout(run_dir).outlook(label), {"label": label, "later_epoch_checkpoints": later})


class UnloadableCheckpointError(RuntimeError):
    """A whole checkpoint that a resume cannot load (``weights_only=True``): a spec bug."""


# Types ``torch.load(weights_only=True)`` accepts without an allowlist.
_SAFE_TYPES = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def _unsafe_objects(value: object, where: str, found: list[str], limit: int = 3) -> None:
    if len(found) >= limit:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _unsafe_objects(item, f"{where}[{key!r}]", found, limit)
    elif isinstance(value, (list, tuple, set)):
        for index, item in enumerate(value):
            _unsafe_objects(item, f"{where}[{index}]", found, limit)
    elif not isinstance(value, _SAFE_TYPES):
        kind = type(value)
        found.append(f"{where} is a {kind.__module__}.{kind.__qualname__}")


def check_weights_only_loadable(path: Path) -> None:
    """Raises ``UnloadableCheckpointError`` unless ``path`` loads as go will load it.

    Lightning (torch >= 2.6) resumes with ``weights_only=True``, which refuses any object
    but tensors and plain containers; the error names the offending objects and the fix.
    """
    try:
        # None is torch's default, as Lightning passes it: True since torch 2.6, unless the
        # environment says otherwise; safe globals the spec registered apply here too.
        torch.load(path, map_location="cpu", mmap=True, weights_only=None)
        return
    except Exception as err:  # noqa: BLE001 - any refusal is reported with its cause
        refusal = _plain(str(err))
    found: list[str] = []
    with contextlib.suppress(Exception):  # the refusal itself is still worth reporting
        _unsafe_objects(torch.load(path, map_location="cpu", mmap=True, weights_only=False), "checkpoint", found)
    what = "; ".join(found) or refusal
    raise UnloadableCheckpointError(
        f"checkpoint {path.name} cannot be loaded with weights_only=True, as the resume will load it: {what}. "
        "Fix: store such state as tensors or lists (numpy RNG state: keys as a tensor, the rest as ints), "
        "or use the kit's RNG callback"
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(text: str) -> str:
    """The first informative line of torch's refusal, without its ANSI codes."""
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    for line in lines:
        if "Unsupported global" in line or "WeightsUnpickler error" in line:
            return line
    return lines[0] if lines else text
