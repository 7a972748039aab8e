"""Test spec: training raises at step 5, after the stop checkpoint (the go phase fails)."""

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule


class LateCrashModule(TinyRegressionModule):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.trainer.global_step == 5:
            raise RuntimeError("injected crash at step 5")
        return super().training_step(batch, batch_idx)


class CrashInGoHarness(TinyLightningHarness):
    module_class = LateCrashModule
