"""The ``Backend`` interface every training stack implements for the harness."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint exists but is torn, unreadable or of the wrong step."""


class TornCheckpointError(RuntimeError):
    """No complete checkpoint is left to resume from."""


class Backend(ABC):
    """How one training stack checkpoints and resumes, for the shared harness code.

    Subclasses are plain objects with no state beyond their constructor arguments, so a
    spec can set ``backend = SomeBackend()`` as a class attribute of its harness.
    """

    #: the backend's name, recorded in logs and reports.
    name: str = ""

    @abstractmethod
    def checkpoint_step(self, path: Path) -> int:
        """The global step a checkpoint holds; raises ``IncompleteCheckpointError`` if torn."""

    def verify_complete(self, path: Path, step: int) -> None:
        """Raises ``IncompleteCheckpointError`` unless ``path`` is a whole checkpoint of ``step``.

        Called by rank 0 before the sentinel names ``path``; implementations also make the
        checkpoint durable (fsync), so a node loss after the sentinel cannot tear it.
        """
        saved = self.checkpoint_step(path)
        if saved != step:
            raise IncompleteCheckpointError(f"checkpoint {path} holds step {saved}, expected {step}")

    @abstractmethod
    def candidates(self, directory: Path) -> list[Path]:
        """The checkpoints in ``directory``, most preferred first (``last`` before older steps)."""

    def newest_complete_checkpoint(self, directory: Path) -> tuple[Path, int, list[str]]:
        """The checkpoint to resume from: the first whole one of ``candidates(directory)``.

        Returns the path, its step, and one line for each preferred candidate that was
        skipped because it is torn. Raises ``TornCheckpointError`` when none is whole.
        """
        candidates = self.candidates(directory)
        skipped: list[str] = []
        for path in candidates:
            try:
                return path, self.checkpoint_step(path), skipped
            except IncompleteCheckpointError as err:
                skipped.append(str(err))
        if not candidates:
            raise TornCheckpointError(f"no checkpoint to resume from in {directory}")
        raise TornCheckpointError(f"torn checkpoint: no complete checkpoint in {directory}: " + "; ".join(skipped))

    @abstractmethod
    def checkpoint_callback(self, dirpath: Path, every_n_train_steps: int) -> pl.Callback:
        """The checkpoint callback of every mode: every ``every_n_train_steps`` steps, plus last."""

    @abstractmethod
    def kill_during_save_callback(
        self, marker: Path, wait_for_kill_s: float, before_tear: Callable[[pl.Trainer], None]
    ) -> pl.Callback:
        """A callback that leaves the second save of the ``last`` checkpoint torn, writes
        ``marker`` and waits to be killed (``--kill-during-save``)."""

    def finish_pending_saves(self, trainer: pl.Trainer) -> None:
        """Blocks until every checkpoint save this process started is complete on disk.

        Called on every rank before the sentinel is written (a collective for backends that
        save asynchronously); synchronous backends have nothing to wait for.
        """
        return None

    def fit(
        self,
        trainer: pl.Trainer,
        model: pl.LightningModule,
        data: pl.LightningDataModule,
        optimizer: Any,
        ckpt_path: Path | None,
    ) -> None:
        """Trains ``model`` with ``trainer``, resuming from ``ckpt_path`` when given."""
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
