"""``--kill-during-save`` for NeMo 2: leave the second ``-last`` save torn, then wait to be killed.

``TearingNeMoCheckpointIO`` wraps the strategy's checkpoint IO (``MegatronCheckpointIO``)
at setup. The second time a ``-last`` checkpoint is written (so one whole checkpoint
already exists), it lets the real save run, then cuts the largest shard file of
``weights/`` to half its length, as a kill during the write would. NeMo's own
``-unfinished`` marker is still in place at that moment (NeMo removes it only after the
save returns), so the torn directory carries both signs a resume must heed. It then
writes the save marker for the orchestrator and waits to be SIGKILLed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

from workers.backends.nemo2.checkpoints import WEIGHTS_DIR, checkpoint_dir, is_last
from workers.torn_marker import announce_torn_save, wait_to_be_killed


class TearingNeMoCheckpointIO(_WrappingCheckpointIO):
    """Delegates to the wrapped checkpoint IO, except for the one save it leaves torn."""

    def __init__(
        self,
        checkpoint_io: Any,
        marker: Path,
        wait_for_kill_s: float,
        before_tear: Callable[[], None],
        tear_on_write: int = 2,
    ) -> None:
        super().__init__(checkpoint_io)
        self.marker = marker
        self.wait_for_kill_s = wait_for_kill_s
        self.before_tear = before_tear
        self.tear_on_write = tear_on_write
        self.last_writes = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        if is_last(Path(path)):
            self.last_writes += 1
            if self.last_writes == self.tear_on_write:
                self._tear(checkpoint_dir(path), checkpoint.get("global_step"))

    def _tear(self, directory: Path, step: Any) -> None:
        shards = sorted((directory / WEIGHTS_DIR).glob("*.distcp"), key=lambda p: p.stat().st_size)
        if not shards:
            raise RuntimeError(f"no shard files in {directory / WEIGHTS_DIR} to tear")
        shard = shards[-1]
        size = shard.stat().st_size
        with open(shard, "r+b") as handle:
            handle.truncate(size // 2)
            handle.flush()
            os.fsync(handle.fileno())
        self.before_tear()
        announce_torn_save(
            self.marker,
            {
                "path": str(directory),
                "step": step,
                "torn_file": str(shard),
                "bytes_written": size // 2,
                "bytes": size,
            },
        )
        wait_to_be_killed(self.wait_for_kill_s, f"{directory} was torn")


class NeMoKillDuringSaveCallback(Callback):
    """Installs ``TearingNeMoCheckpointIO`` around the strategy's checkpoint IO at setup."""

    def __init__(
        self, marker: Path, wait_for_kill_s: float, before_tear: Callable[[pl.Trainer], None] | None = None
    ) -> None:
        self.marker = Path(marker)
        self.wait_for_kill_s = wait_for_kill_s
        self.before_tear = before_tear

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        strategy = trainer.strategy
        if isinstance(strategy.checkpoint_io, TearingNeMoCheckpointIO):
            return
        hook = self.before_tear
        strategy.checkpoint_io = TearingNeMoCheckpointIO(
            strategy.checkpoint_io,
            self.marker,
            self.wait_for_kill_s,
            before_tear=(lambda: hook(trainer)) if hook else (lambda: None),
        )
