"""Mutant: the EMA of the weights is kept in a buffer left out of the state dict.

Bug class: EMA/averaged weights or buffers (BatchNorm running statistics) missing from
the state dict. The buffer is registered non-persistent, so the checkpoint lacks it and
the resumed run starts the average over from the initial weights. Caught by
``buffers_digest`` at the resume point.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "buffers_digest"
EXPECTED_CAUSE = "buffer_not_saved"
CAUGHT_AT = "resume"
BUG_CLASS = "EMA weights (a buffer) missing from the state dict"


class UnsavedEmaModule(TinyRegressionModule):
    def register_ema_buffer(self) -> None:
        # The bug: persistent=False keeps the buffer out of state_dict() and the checkpoint.
        self.register_buffer("ema_weights", self.flat_weights().clone(), persistent=False)


class EmaNotSavedHarness(TinyLightningHarness):
    module_class = UnsavedEmaModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "ema_not_saved")
        super().__init__(root_dir, **kwargs)
