"""Mutant: the optimizer's per-parameter state never reaches the dist checkpoint.

Bug class: Megatron-LM issue 761 (optimizer state not restored). The strategy saves the
model's sharded state and the optimizer's param groups, but not Adam's sharded moments
(``exp_avg``, ``exp_avg_sq``) nor its step counts, so the resumed run starts them from
zero while the weights and the learning rate are right. Caught by
``optimizer_state_digest`` at the resume point.
"""

from __future__ import annotations

from typing import Any

from harness_specs.megatron_gpt_tiny import MegatronGPTTinyHarness
from workers.backends.megatron import MegatronCoreStrategy

CAUGHT_BY = "optimizer_state_digest"
EXPECTED_CAUSE = "optimizer_state_dropped"
CAUGHT_AT = "resume"
BUG_CLASS = "optimizer state not saved in the dist checkpoint (Megatron-LM 761)"


class OptimizerStateNotSavedStrategy(MegatronCoreStrategy):
    def sharded_checkpoint(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        sharded = super().sharded_checkpoint(checkpoint)
        for optimizer_state in sharded["optimizer_states"]:
            optimizer_state["state"] = {}  # the bug: only the param groups are saved
            optimizer_state["scalar_state"] = {}
        sharded["optimizer_state_keys"] = [{} for _ in self.optimizers]
        return sharded


class OptimizerStateNotSavedHarness(MegatronGPTTinyHarness):
    strategy_class = OptimizerStateNotSavedStrategy

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "optimizer_state_not_saved")
        super().__init__(root_dir, **kwargs)
