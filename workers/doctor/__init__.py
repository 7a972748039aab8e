"""``python -m workers.doctor SPEC.py``: what in a setup will not resume, before any training.

The doctor builds the spec's harness, module, datamodule, trainer and loaders the way a
phase does (one process, nothing trained, no checkpoint written) and runs the checks of
``workers.doctor.checks`` on them: a shuffling train loader Lightning cannot save, a
sampler without ``set_epoch``, loaders drawing from the global RNG, dropout without
per-rank RNG state in the checkpoint, a train set that draws random numbers per item in
loader workers without ``workers.kit.WorkerRngState``, epoch-end-only checkpoints or
per-epoch schedulers while the stop falls mid-epoch, ``estimated_stepping_batches`` in
``configure_optimizers`` (Lightning issue 20550), and module, data module or callback
attributes that change during training outside any ``state_dict``. Each finding names the
fix, most of them a part of ``workers.kit``.

Findings are advice: exit 0 (1 with ``--strict``); a spec that cannot be loaded or built
exits 2.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from workers.doctor.checks import CHECKS, Finding, Setup, mentions_estimated_stepping_batches
from workers.harness import Mode, StopAndGoHarness

__all__ = ["CHECKS", "Finding", "Setup", "build_setup", "diagnose"]


def _loaders(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _loaders(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _loaders(item)]
    return [value]


def build_setup(harness_cls: type[StopAndGoHarness], root_dir: Path, stop_step: int | None = None) -> Setup:
    """Builds what the spec's stop phase builds, without training: harness, trainer, module, loaders.

    Args:
        harness_cls: the spec's harness class.
        root_dir: a scratch directory for the harness.
        stop_step: the step the run stops at; default: the first checkpointed validation
            (``val_check_interval``), where the orchestrator's stop phase stops.
    """
    harness = harness_cls(root_dir=root_dir)
    module, datamodule, optimizer_config = harness.setup_model(Mode.STOP)
    trainer = harness.setup_trainer_and_strategy(Mode.STOP, harness.metrics_getter)
    # What trainer.fit does first: the module and the datamodule know the trainer.
    trainer.strategy.connect(module)
    trainer._data_connector.attach_data(module, datamodule=datamodule)
    source = datamodule if datamodule is not None else module
    if datamodule is not None:
        datamodule.prepare_data()
        datamodule.setup("fit")
    train = _loaders(source.train_dataloader())
    val = _loaders(source.val_dataloader()) if hasattr(source, "val_dataloader") else []
    if optimizer_config is None and not mentions_estimated_stepping_batches(module):
        try:
            optimizer_config = module.configure_optimizers()
        except Exception:  # noqa: BLE001 - optimizers that need a running fit: their checks are skipped
            optimizer_config = None
    return Setup(
        harness=harness,
        trainer=trainer,
        module=module,
        datamodule=datamodule,
        train_loader=train[0] if train else None,
        val_loaders=val,
        stop_step=stop_step if stop_step is not None else int(harness.val_check_interval),
        optimizer_config=optimizer_config,
    )


def diagnose(harness_cls: type[StopAndGoHarness], stop_step: int | None = None) -> list[Finding]:
    """Every finding of every check on the spec's setup (built in a scratch directory)."""
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in quiet]
    with tempfile.TemporaryDirectory(prefix="stop_and_go_doctor_") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            setup = build_setup(harness_cls, Path(scratch), stop_step)
            return [finding for check in CHECKS for finding in check(setup)]
        finally:
            for logger, level in zip(quiet, levels, strict=True):
                logger.setLevel(level)
