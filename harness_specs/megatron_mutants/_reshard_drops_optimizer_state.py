"""Mutant: a resume with another TP size loads the weights but not the optimizer state.

Bug class: optimizer state that cannot follow a change of parallel layout. Megatron's
distributed optimizer saves its state in a layout tied to the parallel sizes, and the
usual way out of a reshard error is to load the weights only (``--no-load-optim``,
``load_optim_state=False``): the run goes on with Adam's moments and step counts from
zero while the weights and the learning rate are right. Here the strategy does that
whenever the checkpoint's TP size differs from the resuming one.

It only misbehaves when the TP size changes, so it is not part of the default self-test
sweep (the leading ``_``); run it with the reshard spec's world-size change::

    python -m orchestrator harness_specs/megatron_mutants/_reshard_drops_optimizer_state.py \\
        --go-nproc-per-node 1 --no-reference

Caught by ``full_optimizer_state_digest`` (the TP-gathered moments) at the resume point;
the built-in ``optimizer_state_digest`` is per rank across TP sizes and cannot catch it.
"""

from __future__ import annotations

from typing import Any

from megatron.core import parallel_state

from harness_specs.megatron_gpt_reshard import MegatronGPTReshardHarness
from workers.backends.megatron import MegatronCoreStrategy

CAUGHT_BY = "full_optimizer_state_digest"
EXPECTED_CAUSE = "optimizer_state_dropped"
CAUGHT_AT = "resume"
BUG_CLASS = "optimizer state dropped when the TP size changes on resume"


class ReshardDropsOptimizerStateStrategy(MegatronCoreStrategy):
    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        loaded = super().load_checkpoint(checkpoint_path, weights_only)
        if loaded["parallel_config"]["tp"] != parallel_state.get_tensor_model_parallel_world_size():
            for optimizer_state in loaded["optimizer_states"]:
                optimizer_state["state"] = {}  # the bug: "the optimizer state does not reshard"
        return loaded


class ReshardDropsOptimizerStateHarness(MegatronGPTReshardHarness):
    strategy_class = ReshardDropsOptimizerStateStrategy

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "reshard_drops_optimizer_state")
        super().__init__(root_dir, **kwargs)
