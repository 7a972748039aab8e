"""``NeMo2Backend``: the seed's ``llm.train`` path, with NeMo's checkpoint layout vetted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from workers.backends.base import Backend
from workers.backends.nemo2.checkpoints import (
    autoresume_choice,
    checkpoint_dir,
    fsync_tree,
    nemo_candidates,
    nemo_checkpoint_step,
)
from workers.backends.nemo2.torn_save import NeMoKillDuringSaveCallback


def auto_resume(ckpt_path: Path | None) -> Any:
    """The ``AutoResume`` of a phase, as the seed builds it.

    Stop and continuous (``ckpt_path`` None): ``resume_if_exists=False``. Go: the seed's
    ``resume_if_exists=True`` when NeMo's own pick (the newest finished ``-last``) is the
    checkpoint the harness vetted; otherwise (the ``-last`` is torn) the same plus
    ``resume_from_path`` naming the vetted checkpoint, which ``AutoResume`` prefers over
    its own search. ``resume_ignore_no_checkpoint=True`` in every phase, as in the seed.
    """
    from nemo.lightning import AutoResume

    if ckpt_path is None:
        return AutoResume(resume_if_exists=False, resume_ignore_no_checkpoint=True)
    vetted = checkpoint_dir(ckpt_path)
    if autoresume_choice(vetted.parent) == vetted:
        return AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=True)
    rank_zero_warn(
        f"stop-and-go: NeMo's AutoResume would not pick {vetted.name} (its -last is torn); resuming from it by path"
    )
    return AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=True, resume_from_path=str(vetted))


def seed_model_checkpoint(every_n_train_steps: int) -> pl.Callback:
    """NeMo's ``ModelCheckpoint`` configured as the seed's ``get_callbacks`` does.

    No ``dirpath``: ``NeMoLogger.setup`` points it at ``<log_dir>/checkpoints``, where
    ``AutoResume`` looks (the harness's ``checkpoint_dir``).
    """
    from nemo.lightning.pytorch import callbacks as nl_callbacks

    return nl_callbacks.ModelCheckpoint(
        save_last=True,
        monitor="reduced_train_loss",
        save_top_k=2,
        every_n_train_steps=every_n_train_steps,
        always_save_context=True,
        # The seed also passes try_restore_best_ckpt=False; NeMo 2.7.3's ModelCheckpoint
        # no longer has it (TypeError) and never restores the best checkpoint at train end.
    )


class NeMo2Backend(Backend):
    """NeMo 2: ``llm.train`` with ``NeMoLogger``, ``AutoResume`` and NeMo's checkpoints.

    Args:
        nemo_logger: the ``NeMoLogger`` passed to ``llm.train`` (the harness's
            ``nemo_logger``); ``fit`` needs it, the checkpoint checks do not.
    """

    name = "nemo2"

    def __init__(self, nemo_logger: Any | None = None) -> None:
        self.nemo_logger = nemo_logger

    def checkpoint_step(self, path: Path) -> int:
        return nemo_checkpoint_step(path)

    def verify_complete(self, path: Path, step: int) -> None:
        super().verify_complete(path, step)
        fsync_tree(checkpoint_dir(path))

    def candidates(self, directory: Path) -> list[Path]:
        return nemo_candidates(directory)

    def checkpoint_callback(self, dirpath: Path, every_n_train_steps: int) -> pl.Callback:
        return seed_model_checkpoint(every_n_train_steps)

    def kill_during_save_callback(
        self, marker: Path, wait_for_kill_s: float, before_tear: Callable[[pl.Trainer], None]
    ) -> pl.Callback:
        return NeMoKillDuringSaveCallback(marker, wait_for_kill_s, before_tear=before_tear)

    def fit(
        self,
        trainer: pl.Trainer,
        model: pl.LightningModule,
        data: pl.LightningDataModule,
        optimizer: Any,
        ckpt_path: Path | None,
    ) -> None:
        """Runs the seed's ``llm.train(model, data, trainer, log, optim, resume)``."""
        from nemo.collections import llm

        if self.nemo_logger is None:
            raise ValueError("NeMo2Backend.fit needs a NeMoLogger: use NeMo2StopAndGoHarness or pass nemo_logger")
        llm.train(
            model=model,
            data=data,
            trainer=trainer,
            log=self.nemo_logger,
            optim=optimizer,
            resume=auto_resume(ckpt_path),
        )
