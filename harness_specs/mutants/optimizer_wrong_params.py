"""Mutant: the optimizer state is loaded for the wrong parameters.

Bug class: Megatron-LM issue 761 (optimizer state mapped to the wrong parameters). The
moments of two parameters of the same shape (the biases of the first two layers) are
swapped on load, so nothing fails to load and the total norm is unchanged: only a digest
in parameter order tells. Caught by ``optimizer_state_digest`` at the resume point.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "optimizer_state_digest"
EXPECTED_CAUSE = "optimizer_state_misassigned"
CAUGHT_AT = "resume"
BUG_CLASS = "optimizer state loaded for the wrong params (Megatron-LM 761)"

# Parameter indices in the optimizer's order: net.0.bias and net.3.bias, both of shape (32,).
SWAPPED = (1, 3)


class SwappedOptimizerStateModule(TinyRegressionModule):
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["optimizer_states"][0]["state"]
        a, b = SWAPPED
        state[a], state[b] = state[b], state[a]  # the bug: a wrong parameter mapping


class OptimizerWrongParamsHarness(TinyLightningHarness):
    module_class = SwappedOptimizerStateModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "optimizer_wrong_params")
        super().__init__(root_dir, **kwargs)
