"""Mutant: with fp16 AMP, the grad scaler's state is not restored.

Bug class: composer PR 1376 (GradScaler state missing from the checkpoint). The spec runs
fp16 mixed precision with a dynamic loss scaler that grows every 2 steps; the resumed run
starts a fresh scaler at its initial scale. Caught by ``grad_scaler_scale`` at the resume
point.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "grad_scaler_scale"
EXPECTED_CAUSE = "grad_scaler"
BUG_CLASS = "grad-scaler scale not restored (composer PR 1376)"


class UnrestoredScalerModule(TinyRegressionModule):
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # The bug: the scaler's state is dropped (Lightning stores it under the plugin's name).
        checkpoint.pop(MixedPrecision.__qualname__, None)
        checkpoint.pop("native_amp_scaling_state", None)


class GradScalerNotRestoredHarness(TinyLightningHarness):
    module_class = UnrestoredScalerModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "grad_scaler_not_restored")
        super().__init__(root_dir, **kwargs)

    def precision_plugin(self) -> Precision | None:
        scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2)
        return MixedPrecision("16-mixed", "cpu", scaler=scaler)
