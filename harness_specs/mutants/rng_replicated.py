"""Mutant: per-rank RNG state saved as if it were replicated, so rank 1 gets rank 0's.

Bug class: Megatron-LM PR 6858. Only rank 0 writes the checkpoint, and the RNG state it
holds is treated as every rank's: after the resume every rank restores rank 0's stream,
so rank 1's dropout masks change. Rank 0 is fine. Caught by ``rng_torch`` on rank 1 at
the resume point.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from harness_specs.tiny_lightning import TinyLightningHarness
from workers.kit import RngStateCallback

CAUGHT_BY = "rng_torch"
EXPECTED_CAUSE = "rng_replicated"
CAUGHT_AT = "resume"
MIN_RANKS = 2  # rank 1 must resume with a state other than its own
BUG_CLASS = "per-rank RNG saved as replicated: rank 1 gets rank 0's stream (Megatron-LM PR 6858)"


class ReplicatedRngCallback(RngStateCallback):
    def rank_to_restore(self, trainer: pl.Trainer) -> int:
        return 0  # the bug: rank 0's state restored on every rank


class RngReplicatedHarness(TinyLightningHarness):
    rng_callback_class = ReplicatedRngCallback

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "rng_replicated")
        super().__init__(root_dir, **kwargs)
