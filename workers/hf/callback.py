"""The ``TrainerCallback`` the tool adds to every ``Trainer`` of a wrapped phase (``workers.hf``).

It feeds the plain hooks' recorder and checkpoint protocol (``workers.plain``) what the
``Trainer`` knows: its epochs, its accumulation window, when ``checkpoint-N`` is complete,
and whether go resumed. Imported only once ``transformers.trainer`` is.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from orchestrator.wrap.command import last_stop
from workers.errors import NotResumedError, StopAndGoException
from workers.plain import hooks as plain

TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME: written last into checkpoint-N
INSTRUMENTATION = "transformers"
TORN_FIX = (
    "resume_from_checkpoint=True and get_last_checkpoint take the highest checkpoint-N whether or not its save "
    f"finished: resume from the highest checkpoint-N that has {TRAINER_STATE} (the Trainer writes it last), "
    "or save to a temporary directory and rename it when complete"
)


class StopAndGoTrainerCallback(TrainerCallback):
    """Epochs, the accumulation window, checkpoint completion and the resume check of a ``Trainer``."""

    def __init__(self) -> None:
        run = plain.active()
        if run is not None:  # from the Trainer's construction: train() loads the checkpoint first
            run.checkpoints.instrumentation = INSTRUMENTATION
            run.checkpoints.torn_fix = TORN_FIX

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run = plain.active()
        if run is None:  # the plain hooks stood down (a Lightning Trainer): nothing to feed
            return
        checkpoints = run.checkpoints
        checkpoints.resume_facts = {"accumulate_grad_batches": int(args.gradient_accumulation_steps)}
        if checkpoints.resumed or state.global_step > 0:
            return
        # Go's Trainer starts from step 0: it loaded no checkpoint. Say so now, not after training.
        stop = last_stop(checkpoints.run) or {}
        raise NotResumedError(
            f"{checkpoints.config.label}: trainer.train() started at step 0: it did not resume from the stop's "
            f"checkpoint {stop.get('checkpoint_path', '(none)')}; call trainer.train(resume_from_checkpoint=True) "
            "(the newest checkpoint-N of output_dir), or pass the script's own flag with --go-args "
            "'--resume_from_checkpoint {checkpoint}'"
        )

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run = plain.active()
        if run is not None:  # state.epoch is fractional (a resumed epoch starts mid-way); +eps for float sums
            run.recorder.on_epoch(int(state.epoch + 1e-6))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run = plain.active()
        if run is None:
            return
        checkpoints = run.checkpoints
        if args.should_save:  # this process writes trainer_state.json, last
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            marker = os.path.join(folder, TRAINER_STATE)
            if not os.path.isfile(marker):
                raise StopAndGoException(f"{folder} has no {TRAINER_STATE} after on_save: not a complete checkpoint")
            checkpoints.saving(marker)  # part of the checkpoint: in its files, fsynced
            checkpoints.saved(marker)
        checkpoints.checkpoint_complete()
