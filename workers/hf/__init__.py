"""Zero-code instrumentation of Hugging Face ``transformers.Trainer`` scripts (``stop-and-go run -- SCRIPT``).

A ``Trainer`` is a plain loop over torch: its optimizer steps, the model's forward, the
``backward`` and its ``torch.save``/``safetensors`` checkpoint files are seen by the
plain-PyTorch hooks (``workers.plain``), which record the phase with the one recorder
(``workers.record``) and the one checkpoint protocol (``workers.plain.saves``). This
adapter adds only what a ``Trainer`` tells better than those hooks, through a
``TrainerCallback`` (``workers.hf.callback``) added to every ``Trainer`` the script builds:

- **a checkpoint is complete** when the rank's ``on_save`` fires for ``checkpoint-N`` and, on
  the process that writes it, ``trainer_state.json`` is in it: then the metadata, and the
  sentinel once every rank's is written (not at the next optimizer step);
- **the epoch** from ``TrainerState`` (a ``Trainer``'s sampler is not a ``DistributedSampler``);
- **the gradient-accumulation window** (``gradient_accumulation_steps``) in the resume point;
- **go must resume**: a go whose ``train()`` starts at step 0 fails at once, naming
  ``resume_from_checkpoint``; one whose "latest" is the torn ``checkpoint-N`` of
  ``--kill-during-save`` gets the ``Trainer``'s fix.

How the callback gets in: ``install`` registers a post-import hook (``wrapt``, maintained,
a ``sys.meta_path`` finder) on ``transformers.trainer``; when the script imports it, the
hook wraps ``Trainer.__init__`` to add the callback (subclasses such as TRL's call it too).
Importing transformers ahead instead would cost every plain script seconds, and bind
``safetensors``' functions before the plain hooks wrap them. Inert outside a phase run
by the tool (``install`` is called by ``workers.wrap.run`` only) and after the plain hooks
stood down for a Lightning ``Trainer``; without ``wrapt`` (the ``hf`` extra) a ``Trainer``
script is recorded by the plain hooks alone.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

TRAINER_MODULE = "transformers.trainer"


def _add_callback(trainer_module: ModuleType) -> None:
    """Wraps ``Trainer.__init__`` of the module just imported to add the tool's callback."""
    trainer_class = trainer_module.Trainer
    original = trainer_class.__init__
    if getattr(original, "_stop_and_go", False):
        return

    @functools.wraps(original)
    def __init__(trainer: Any, *args: Any, **kwargs: Any) -> None:
        original(trainer, *args, **kwargs)
        from workers.hf.callback import StopAndGoTrainerCallback
        from workers.plain import hooks as plain

        callbacks = trainer.callback_handler.callbacks
        if plain.active() is not None and not any(isinstance(c, StopAndGoTrainerCallback) for c in callbacks):
            trainer.add_callback(StopAndGoTrainerCallback())

    __init__._stop_and_go = True  # type: ignore[attr-defined]
    trainer_class.__init__ = __init__


def install() -> bool:
    """Adds the callback to every ``Trainer`` built from now on; False without ``wrapt``."""
    try:
        import wrapt
    except ImportError:
        return False
    wrapt.register_post_import_hook(_add_callback, TRAINER_MODULE)
    return True
