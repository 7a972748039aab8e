"""``--kill-during-save``: stop a run halfway through writing a checkpoint.

``KillDuringSaveCallback`` wraps the strategy's ``CheckpointIO`` at setup. When
``last.ckpt`` is written for the second time (so one complete checkpoint already exists),
the wrapper writes the first half of the serialized checkpoint over the file, as an
in-place write interrupted by a kill would, fsyncs it, tells the orchestrator through the
save marker (``RunLayout.saving_marker``) and waits to be killed. The orchestrator then
SIGKILLs the workers for real; the torn file stays on disk for go to deal with.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback

from workers.torn_marker import announce_torn_save, wait_to_be_killed


class TearingCheckpointIO(CheckpointIO):
    """Delegates to ``inner``, except for the one write it leaves torn."""

    def __init__(
        self,
        inner: CheckpointIO,
        marker: Path,
        wait_for_kill_s: float,
        before_tear: Callable[[], None],
        tear_on_write: int = 2,
    ) -> None:
        self.inner = inner
        self.marker = marker
        self.wait_for_kill_s = wait_for_kill_s
        self.before_tear = before_tear
        self.tear_on_write = tear_on_write
        self.last_writes = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if Path(path).name == "last.ckpt":
            self.last_writes += 1
            if self.last_writes == self.tear_on_write:
                self._tear(checkpoint, Path(path))
        self.inner.save_checkpoint(checkpoint, path, storage_options)

    def _tear(self, checkpoint: dict[str, Any], path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        written = len(data) // 2
        with open(path, "wb") as handle:
            handle.write(data[:written])
            handle.flush()
            os.fsync(handle.fileno())
        self.before_tear()
        announce_torn_save(
            self.marker,
            {"path": str(path), "step": checkpoint.get("global_step"), "bytes_written": written, "bytes": len(data)},
        )
        wait_to_be_killed(self.wait_for_kill_s, f"{path} was half written")

    def load_checkpoint(self, path: Any, map_location: Any | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.inner.load_checkpoint(path, map_location, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()


class KillDuringSaveCallback(Callback):
    """Installs ``TearingCheckpointIO`` on rank 0, the rank that writes checkpoints."""

    def __init__(self, marker: Path, wait_for_kill_s: float, before_tear: Callable[[pl.Trainer], None]) -> None:
        self.marker = marker
        self.wait_for_kill_s = wait_for_kill_s
        self.before_tear = before_tear

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            trainer.strategy.checkpoint_io = TearingCheckpointIO(
                trainer.strategy.checkpoint_io,
                self.marker,
                self.wait_for_kill_s,
                before_tear=lambda: self.before_tear(trainer),
            )
