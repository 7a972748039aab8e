"""``MegatronBackend``: the harness seam for ``MegatronCoreStrategy``'s sharded checkpoint directories.

- checkpoints are directories (``epoch=E-step=S`` and ``last``) written by every rank;
  one is complete only with its marker and every file as the marker lists it
  (``marker.checked_step``), and ``verify_complete`` makes it durable first;
- ``checkpoint_callback`` is a ``ModelCheckpoint`` whose names carry no file extension;
- ``--kill-during-save``: the second save of ``last`` is scheduled on the async writer and
  never finalized; rank 0 tells the orchestrator through the save marker while the writer
  may still be writing, and every rank waits for the kill.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from workers.backends.base import Backend, IncompleteCheckpointError
from workers.backends.lightning import step_in_name
from workers.backends.megatron import marker
from workers.backends.megatron.strategy import MegatronCoreStrategy, megatron_strategy
from workers.torn_marker import announce_torn_save, wait_to_be_killed

LAST = "last"


class DirectoryModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for checkpoints that are directories: ``epoch=0-step=2``, ``last``."""

    FILE_EXTENSION = ""


class MegatronBackend(Backend):
    """megatron-core models checkpointed by ``MegatronCoreStrategy`` (``dist_checkpointing``)."""

    name = "megatron"

    def checkpoint_step(self, path: Path) -> int:
        return marker.checked_step(Path(path))

    def verify_complete(self, path: Path, step: int) -> None:
        super().verify_complete(path, step)
        marker.fsync_tree(Path(path))

    def candidates(self, directory: Path) -> list[Path]:
        if not directory.is_dir():
            return []
        dirs = [p for p in directory.iterdir() if p.is_dir()]
        return sorted(dirs, key=lambda p: (p.name == LAST, step_in_name(p)), reverse=True)

    def checkpoint_callback(self, dirpath: Path, every_n_train_steps: int) -> pl.Callback:
        return DirectoryModelCheckpoint(
            dirpath=dirpath, save_last=True, save_top_k=-1, every_n_train_steps=every_n_train_steps
        )

    def kill_during_save_callback(
        self, marker: Path, wait_for_kill_s: float, before_tear: Callable[[pl.Trainer], None]
    ) -> pl.Callback:
        return KillDuringAsyncSaveCallback(marker, wait_for_kill_s, before_tear)

    def finish_pending_saves(self, trainer: pl.Trainer) -> None:
        megatron_strategy(trainer).finish_pending_saves(blocking=True)


class KillDuringAsyncSaveCallback(Callback):
    """Leaves the second save of ``last`` torn: scheduled on the async writer, never finalized.

    Every earlier save is finalized first, so the checkpoints before it are complete. Then
    the save of ``last`` is scheduled as usual (its old directory and marker are already
    gone), rank 0 writes the save marker for the orchestrator while the writer process may
    still be writing the shards, and every rank waits to be killed. Go must then skip the
    torn ``last`` (no completeness marker) and resume from the newest complete checkpoint.
    """

    def __init__(
        self,
        saving_marker: Path,
        wait_for_kill_s: float,
        before_tear: Callable[[pl.Trainer], None],
        tear_on_write: int = 2,
    ) -> None:
        self.saving_marker = saving_marker
        self.wait_for_kill_s = wait_for_kill_s
        self.before_tear = before_tear
        self.tear_on_write = tear_on_write
        self.last_writes = 0
        self.trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        strategy = megatron_strategy(trainer)
        if not strategy.async_save:
            raise ValueError("--kill-during-save with the megatron backend needs MegatronCoreStrategy(async_save=True)")
        self.trainer = trainer
        strategy.before_save_hooks.append(self._before_save)
        strategy.after_save_hooks.append(self._after_schedule)

    def _is_torn_save(self, directory: Path) -> bool:
        return directory.name == LAST and self.last_writes + 1 == self.tear_on_write

    def _before_save(self, strategy: MegatronCoreStrategy, directory: Path, step: int) -> None:
        if self._is_torn_save(directory):
            strategy.finish_pending_saves(blocking=True)  # every earlier checkpoint is complete

    def _after_schedule(self, strategy: MegatronCoreStrategy, directory: Path, step: int) -> None:
        if directory.name != LAST:
            return
        self.last_writes += 1
        if self.last_writes != self.tear_on_write:
            return
        assert self.trainer is not None
        self.before_tear(self.trainer)
        if strategy.is_global_zero:
            written = sum(marker.checkpoint_files(directory).values())
            announce_torn_save(
                self.saving_marker,
                {
                    "path": str(directory),
                    "step": step,
                    "bytes_written": written,
                    "bytes": self._expected_bytes(directory.parent, written),
                    "pending_saves": strategy.pending_saves(),
                },
            )
        # The async writer goes on in its own process; this save is never finalized.
        wait_to_be_killed(self.wait_for_kill_s, f"{directory} was being saved")

    @staticmethod
    def _expected_bytes(checkpoint_dir: Path, fallback: int) -> int:
        # The size a complete save has: the newest complete checkpoint's (same model, same layout).
        for path in MegatronBackend().candidates(checkpoint_dir):
            try:
                payload = marker.read_marker(path)
            except IncompleteCheckpointError:
                continue
            return sum(payload["files"].values())
        return fallback
