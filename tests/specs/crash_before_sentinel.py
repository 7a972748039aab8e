"""Test spec: every rank raises at step 1, before any checkpoint (the stop phase fails)."""

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule


class CrashingModule(TinyRegressionModule):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.trainer.global_step == 1:
            raise RuntimeError("injected crash at step 1")
        return super().training_step(batch, batch_idx)


class CrashBeforeSentinelHarness(TinyLightningHarness):
    module_class = CrashingModule
