"""Mutant: the EMA's update counter is a plain attribute, outside every state dict.

Bug class: a Python attribute that drives training but no checkpoint carries (an EMA's
update count, a schedule ramp). The EMA starts from the current weights at its first
update (``self.updates == 0``), as lazily initialised EMAs do; in one uninterrupted run
that is the initial weights, which the buffer already holds, so its continuous run is the
default spec's. After a resume the counter is 0 again and the EMA restarts from the
resumed weights. Caught by ``buffers_digest`` at the first step after the resume; the
diagnosis names the attribute (``self.updates`` 0 after the resume, 2 when saved).
"""

from __future__ import annotations

from typing import Any

import torch

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "buffers_digest"
EXPECTED_CAUSE = "attribute_not_saved"
BUG_CLASS = "a Python attribute (EMA update counter) that drives training, outside the state dict"
# Its bug acts only on a resume: its continuous run is the default spec's (self-test reuses it).
SHARES_REFERENCE = "../tiny_lightning.py"


class CountedEmaModule(TinyRegressionModule):
    def __init__(self) -> None:
        super().__init__()
        self.updates = 0  # the bug: a plain attribute, lost at every resume

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.updates == 0:  # the EMA starts from the weights of its first update
            self.ema_weights.copy_(self.flat_weights())
        self.updates += 1
        return super().training_step(batch, batch_idx)


class EmaCounterNotSavedHarness(TinyLightningHarness):
    module_class = CountedEmaModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "ema_counter_not_saved")
        super().__init__(root_dir, **kwargs)
