"""Mutant: the optimizer's weight decay is applied again when the checkpoint is loaded.

Bug class: optimizer hyperparameters changed on load. The module adds its configured
weight decay to every saved param group in ``on_load_checkpoint`` (meant for checkpoints
saved without it), but the saved groups already carry it, so the resumed run decays twice
as hard. Caught by ``optimizer_hparams`` at the resume point (saved 0.01, resumed 0.02).
"""

from __future__ import annotations

from typing import Any

import torch

from harness_specs.tiny_lightning import BASE_LR, TinyLightningHarness, TinyRegressionModule, warmup_cosine

CAUGHT_BY = "optimizer_hparams"
EXPECTED_CAUSE = "optimizer_hparams_changed"
CAUGHT_AT = "resume"
BUG_CLASS = "optimizer hyperparameters changed on load (weight decay applied twice)"
WEIGHT_DECAY = 0.01


class DoubledWeightDecayModule(TinyRegressionModule):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=BASE_LR, weight_decay=WEIGHT_DECAY)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for group in checkpoint["optimizer_states"][0]["param_groups"]:
            group["weight_decay"] += WEIGHT_DECAY  # the bug: the saved groups already carry it


class WeightDecayOnLoadHarness(TinyLightningHarness):
    module_class = DoubledWeightDecayModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "weight_decay_on_load")
        super().__init__(root_dir, **kwargs)
