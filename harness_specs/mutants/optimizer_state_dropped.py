"""Mutant: the optimizer's per-parameter state is dropped on load.

Bug class: Megatron-LM issue 761 (optimizer state not restored). Adam's moments are not
loaded, so the resumed run starts them from zero while the weights and the learning
rate are right. Caught by ``optimizer_state_digest`` at the resume point.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "optimizer_state_digest"
EXPECTED_CAUSE = "optimizer_state_dropped"
CAUGHT_AT = "resume"
BUG_CLASS = "optimizer state dropped on load (Megatron-LM 761)"


class DroppedOptimizerStateModule(TinyRegressionModule):
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for optimizer_state in checkpoint["optimizer_states"]:
            optimizer_state["state"] = {}  # the bug: the moments are lost


class OptimizerStateDroppedHarness(TinyLightningHarness):
    module_class = DroppedOptimizerStateModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "optimizer_state_dropped")
        super().__init__(root_dir, **kwargs)
