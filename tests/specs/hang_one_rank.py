"""Test spec: rank 1 hangs at step 1 while rank 0 waits for it in the gradient all-reduce."""

import time
from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule


class HangingModule(TinyRegressionModule):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.trainer.global_step == 1 and self.trainer.global_rank == 1:
            time.sleep(3600)
        return super().training_step(batch, batch_idx)


class HangOneRankHarness(TinyLightningHarness):
    module_class = HangingModule
