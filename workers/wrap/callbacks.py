"""The instrumentation a wrapped script's Trainer gets: the harness's callbacks, adapted.

A spec's harness decides when to validate and checkpoint; a user's script decides for
itself. So here the stop follows the script's own ``ModelCheckpoint`` cadence (the first
checkpoint saved after the phase started, once its save has returned), a script that
checkpoints too rarely fails fast with what its checkpointing is, and go resumes a script
whose ``fit`` would start from scratch from the stop's checkpoint itself.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from orchestrator.protocol import ENV_RUN_DIR, RunLayout
from orchestrator.run.events import NOTICE_PREFIX
from orchestrator.wrap.command import last_stop_checkpoint
from workers.backends.base import Backend
from workers.backends.lightning import LightningBackend
from workers.callbacks import MetricsTrajectoryCallback, RaiseAfterMetadataCallback
from workers.checkpoints import last_saved_step
from workers.errors import NoCheckpointError, NotResumedError
from workers.metrics import to_jsonable

# How a script's checkpointing can be changed from the command line (the fix offered).
_FIX = "rerun with --checkpoint-every K (adds a ModelCheckpoint(every_n_train_steps=K)), or checkpoint more often"


def describe_checkpointing(trainer: pl.Trainer) -> str:
    """The script's checkpointing in one line, e.g. ``ModelCheckpoint(every_n_epochs=1)``."""
    parts = []
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint):
            parts.append(type(cb).__name__)
            continue
        # Lightning keeps the cadence in private fields; its repr shows none of it.
        fields = {
            "every_n_train_steps": cb._every_n_train_steps,
            "every_n_epochs": cb._every_n_epochs,
            "train_time_interval": cb._train_time_interval,
            "save_last": cb.save_last,
            "dirpath": cb.dirpath,
        }
        parts.append("ModelCheckpoint(" + ", ".join(f"{k}={v!r}" for k, v in fields.items() if v) + ")")
    return ", ".join(parts) or "none (enable_checkpointing=False or no ModelCheckpoint)"


def backend_for(trainer: pl.Trainer) -> Backend:
    """The checkpoint format of the script's Trainer: NeMo's directories or Lightning's files."""
    if type(trainer.strategy).__module__.startswith("nemo."):
        # Imported here: only a NeMo venv has nemo.
        from workers.backends.nemo2 import NeMo2Backend

        return NeMo2Backend()
    return LightningBackend()


def _first_possible_save(trainer: pl.Trainer) -> int | None:
    """The earliest step the script's checkpointing can save at, when it can be told up front.

    Only epoch-wise checkpointing without mid-epoch validation is predictable (the first
    save ends the first epoch); with a step or time cadence, or a validation that can
    save mid-epoch, this returns None and the stop simply waits for a save.
    """
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:  # inf: an iterable without a length
        return None
    per_epoch = max(1, batches // max(1, trainer.accumulate_grad_batches))
    if trainer.enable_validation and trainer.val_check_batch < batches:
        return None
    steps = []
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint) or cb._every_n_train_steps or cb._train_time_interval:
            return None
        steps.append(per_epoch * max(1, cb._every_n_epochs or 1))
    return trainer.global_step + min(steps) if steps else None


class WrapStopCallback(RaiseAfterMetadataCallback):
    """Stops at the first checkpoint the script saves after the phase started.

    The check runs at the next batch start, after the ``ModelCheckpoint`` hook that saved
    (and its barrier) has returned, so the sentinel never names a half-written file.
    With ``kill_at`` the stop step is fixed as in spec mode; with ``later_epoch`` (the
    default scenario's go1) only a checkpoint of a later epoch than the start's counts.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.backend = backend_for(trainer)
        if not trainer.checkpoint_callbacks:
            raise NoCheckpointError(
                f"{self.label}: the script's Trainer saves no checkpoints "
                f"(checkpointing: {describe_checkpointing(trainer)}); {_FIX}"
            )
        super().on_train_start(trainer, pl_module)
        first = _first_possible_save(trainer)
        if self.kill_step is None and first is not None and 0 < trainer.max_steps <= first:
            raise NoCheckpointError(
                f"{self.label}: the script's first checkpoint would come at step {first}, but training ends at "
                f"step {trainer.max_steps} (checkpointing: {describe_checkpointing(trainer)}); {_FIX}"
            )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.kill_step is not None:
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
            return
        step = last_saved_step(trainer)
        if step is None or step != trainer.global_step or step <= self.start_step:
            return
        if not self._in_epoch_to_stop(trainer, step):
            return  # the default scenario's go1: resume the final go after an epoch boundary
        self._stop(trainer)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass  # the script's checkpoint, not a validation, marks the stop point

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_kill_step_reached(trainer)
        saved = last_saved_step(trainer)
        when = f"its only checkpoint came at the end (step {saved})" if saved else "it saved no checkpoint"
        raise NoCheckpointError(
            f"{self.label}: training ended at step {trainer.global_step} and {when}, so there is no checkpoint "
            f"to stop at and resume from (checkpointing: {describe_checkpointing(trainer)}); {_FIX}"
        )


class LaunchedWorldError(Exception):
    """The script's Trainer runs on fewer ranks than torchrun started: its ranks train apart."""


def check_launched_world(trainer: pl.Trainer, label: str) -> None:
    """Raises ``LaunchedWorldError`` when ``trainer`` does not span torchrun's world.

    A script that sets ``devices`` from ``LOCAL_WORLD_SIZE`` but no ``num_nodes`` trains
    one independent run per agent under ``--nnodes``; every "rank" then writes the same
    checkpoints, and no verdict would mean anything.
    """
    ranks = int(getattr(trainer.strategy, "world_size", 1))
    launched = int(os.environ.get("WORLD_SIZE", ranks))
    if ranks == launched:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", launched))
    raise LaunchedWorldError(
        f"{label}: torchrun started {launched} ranks ({launched // max(1, local)} node(s) x {local}), but the "
        f"script's Trainer runs {ranks} (num_nodes={trainer.num_nodes}); give it "
        "num_nodes=int(os.environ['WORLD_SIZE']) // int(os.environ['LOCAL_WORLD_SIZE']) and "
        "devices=int(os.environ['LOCAL_WORLD_SIZE'])"
    )


def trainer_being_built() -> pl.Trainer | None:
    """The ``Trainer`` whose ``__init__`` is calling the callbacks factory, if any.

    The factory gets no arguments; the Trainer is the ``self`` of a caller frame. Its
    strategy (and so its world size) is already chosen by then.
    """
    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, pl.Trainer) and frame.f_code.co_name == "__init__":
            return candidate
        frame = frame.f_back
    return None


class ResumeGuardCallback(Callback):
    """Resumes go from the stop's checkpoint where the script's ``fit`` would start from scratch.

    A plain script calls ``trainer.fit(model, dm)`` with no ``ckpt_path``, or with
    ``"last"``, which finds nothing in go (the default ``ModelCheckpoint`` keeps no
    ``last.ckpt``, and go's logger writes to a new ``version_N``). Where Lightning resolves
    fit's checkpoint to none, this supplies the one the last stop's sentinel names, and rank
    0 says so in one line (relayed to the terminal: ``NOTICE_PREFIX``). A path the script
    gave, or that NeMo's ``AutoResume`` set, is kept. A go that still trains from scratch
    fails at once, naming what its ``fit`` got.

    Args:
        label: the phase's label.
        trainer: the Trainer being built (``trainer_being_built``); None resumes nothing.
    """

    def __init__(self, label: str, trainer: pl.Trainer | None = None) -> None:
        self.label = label
        self.seen = "the script's fit got no ckpt_path"  # what the script's fit asked for, for the error
        if trainer is not None:
            self._resume_from_stop(trainer)

    def _resume_from_stop(self, trainer: pl.Trainer) -> None:
        # Lightning resolves fit's ckpt_path ("last", a Trainer-set path ...) here; there is
        # no public hook between that and the restore. Wrapped on this Trainer only.
        connector = getattr(trainer, "_checkpoint_connector", None)
        select = getattr(connector, "_select_ckpt_path", None)
        run_dir = os.environ.get(ENV_RUN_DIR)
        if select is None or run_dir is None:
            return

        def select_or_stop_checkpoint(state_fn: Any, ckpt_path: Any, *args: Any, **kwargs: Any) -> Any:
            chosen = select(state_fn, ckpt_path, *args, **kwargs)
            if chosen or getattr(state_fn, "value", state_fn) != "fit":
                return chosen
            self.seen = _what_fit_got(trainer, ckpt_path)
            checkpoint = last_stop_checkpoint(RunLayout(run_dir))
            if trainer.is_global_zero:
                print(f"{NOTICE_PREFIX}{self.seen}; resumed it from the stop's checkpoint {checkpoint}", flush=True)
            return checkpoint

        connector._select_ckpt_path = select_or_stop_checkpoint  # type: ignore[union-attr]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.ckpt_path:
            raise NotResumedError(
                f"{self.label}: the script started training from scratch ({self.seen}); make it resume: "
                "--go-args '--ckpt_path {checkpoint}' (or the script's own flag)"
            )


def _what_fit_got(trainer: pl.Trainer, ckpt_path: Any) -> str:
    """``the script's fit got no ckpt_path``, or where ``"last"`` looked and found no ``last.ckpt``."""
    if ckpt_path is None:
        return "the script's fit got no ckpt_path"
    if str(ckpt_path) != "last":
        return f"the script's fit got ckpt_path={str(ckpt_path)!r}, which resolved to no checkpoint"
    dirs = []
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint):
            try:  # where "last" looks: the logger's version_N/checkpoints unless dirpath is given
                dirs.append(str(cb.dirpath or cb._ModelCheckpoint__resolve_ckpt_dir(trainer)))  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - the directory only makes the message precise
                continue
    where = f" in {', '.join(dirs)}" if dirs else ""
    return f'the script\'s fit got ckpt_path="last", but there is no last.ckpt{where}'


class WrapTrajectoryCallback(MetricsTrajectoryCallback):
    """The harness's per-step trajectory plus every metric the step logged (``logged/NAME``).

    A logged metric counts for a step only when this step produced a new value for it:
    epoch-level values (a validation's, say) linger in ``callback_metrics`` in a
    continuous run but not in a resumed one, and would differ for no fault of the resume.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._before: dict[str, int] = {}

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._before = {k: id(v) for k, v in trainer.callback_metrics.items()}
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        count = len(self.entries)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if len(self.entries) == count:
            return  # a gradient-accumulation micro-batch
        metrics = self.entries[-1]["metrics"]
        for name, value in trainer.callback_metrics.items():
            if self._before.get(name) != id(value):
                metrics[f"logged/{name}"] = to_jsonable(value)


class FinalStepCallback(Callback):
    """Remembers the global step at the end of training, for the worker's result file."""

    final_step: int | None = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        FinalStepCallback.final_step = trainer.global_step
