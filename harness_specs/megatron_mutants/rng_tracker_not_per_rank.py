"""Mutant: the RNG states, megatron's tracker included, are saved once, not per rank.

Bug class: RNG state saved as a replicated object (Megatron-LM saves ``rng_state`` with
``replica_id`` set to the data-parallel rank unless ``data_parallel_random_init`` is on).
Only rank 0's states reach the checkpoint and every rank loads them, so rank 1 resumes
with rank 0's tracker and its attention-dropout masks differ from a continuous run's.
Caught by ``megatron_rng_tracker`` on rank 1 at the resume point.
"""

from __future__ import annotations

from typing import Any

import torch
from megatron.core.dist_checkpointing.mapping import ShardedObject

from harness_specs.megatron_gpt_tiny import MegatronGPTTinyHarness
from workers.backends.megatron import MegatronCoreStrategy

CAUGHT_BY = "megatron_rng_tracker"
EXPECTED_CAUSE = "rng_replicated"
CAUGHT_AT = "resume"
MIN_RANKS = 2  # rank 1 must resume with a tracker other than its own
BUG_CLASS = "RNG tracker saved once and restored to every rank (not per rank)"


class ReplicatedRngStrategy(MegatronCoreStrategy):
    def rng_sharded_object(self) -> ShardedObject:
        own = super().rng_sharded_object()
        # The bug: one global object, rank 0 its main replica, every other rank a copy.
        return ShardedObject(own.key, own.data, (1,), (0,), replica_id=torch.distributed.get_rank())


class RngTrackerNotPerRankHarness(MegatronGPTTinyHarness):
    strategy_class = ReplicatedRngStrategy

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "rng_tracker_not_per_rank")
        super().__init__(root_dir, **kwargs)
