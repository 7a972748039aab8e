"""The ``lightning.pytorch.callbacks_factory`` entry point (registered in pyproject.toml).

Lightning calls ``callbacks()`` with no arguments in every ``Trainer.__init__``
(``nl.Trainer`` of NeMo included, a subclass). Outside a phase run by
``stop-and-go run`` it returns nothing, so installing the package changes no one's
training.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from orchestrator.judge.compare import tolerances_from_env
from workers.callbacks import MetadataSaveCallback, TestCheckpointIntegrityCallback
from workers.errors import NoCheckpointError
from workers.metrics import MetricsFn, builtin_metrics
from workers.plain import hooks as plain
from workers.progress import ProgressCallback
from workers.wrap.callbacks import (
    FinalStepCallback,
    ResumeGuardCallback,
    WrapStopCallback,
    WrapTrajectoryCallback,
    check_launched_world,
    trainer_being_built,
)
from workers.wrap.config import WrapConfig


def wrap_metrics(check_rng: bool) -> dict[str, MetricsFn]:
    """The built-in metrics plus the epoch; without ``check_rng``, no global RNG digests.

    Lightning's checkpoints do not hold the global random generators, so a plain script
    resumes them from its seed, not from the stop: the digests would always differ even
    where no training step draws from them. Where one does (dropout, augmentation), the
    losses and weights after the resume show it.
    """
    metrics = builtin_metrics()
    if not check_rng:
        metrics = {k: v for k, v in metrics.items() if not k.startswith("rng_")}
    metrics["epoch"] = lambda trainer, module: trainer.current_epoch
    return metrics


def callbacks() -> list[pl.Callback]:
    """The harness's callbacks for the wrapped phase in progress, else ``[]``."""
    config = WrapConfig.from_env()
    if config is None:
        return []
    plain.stand_down()  # a Lightning Trainer: these callbacks record the phase, not the plain-loop hooks
    if config.kill_during_save:
        raise NoCheckpointError(
            f"{config.label}: --kill-during-save tears the checkpoints a plain PyTorch script writes with "
            "torch.save or torch.distributed.checkpoint; for a Lightning Trainer use a spec (SPEC --kill-during-save)"
        )
    trainer = trainer_being_built()
    if trainer is not None:  # fail before the script's own callbacks trip over a split run
        check_launched_world(trainer, config.label)
    metrics = wrap_metrics(config.check_rng)
    out: list[pl.Callback] = [
        FinalStepCallback(),
        WrapTrajectoryCallback(config.metadata_dir, metrics, phase=config.label),
        ProgressCallback(config.label),
    ]
    if config.mode == "go":
        out.append(ResumeGuardCallback(config.label, trainer))
        out.append(
            TestCheckpointIntegrityCallback(
                config.metadata_dir, metrics, tolerances=tolerances_from_env(), label=config.label
            )
        )
    if config.mode == "stop" or config.stop_after_resume:
        out.append(MetadataSaveCallback(config.metadata_dir, metrics))
        out.append(
            WrapStopCallback(
                config.metadata_dir, kill_at=config.kill_at, label=config.label, later_epoch=config.later_epoch
            )
        )
    if config.checkpoint_every:
        # save_top_k=-1 keeps every step's file, so the sentinel's checkpoint is never pruned.
        out.append(
            ModelCheckpoint(
                dirpath=config.ckpt_dir,
                filename="{step}",
                every_n_train_steps=config.checkpoint_every,
                save_top_k=-1,
                save_last=True,
            )
        )
    return out
