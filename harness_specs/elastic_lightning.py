"""The default spec made elastic: it may resume with another number of ranks.

Run it with ``--go-nproc-per-node`` (e.g. stop on 2 ranks, go on 1, or 1 on 2). What a
resume across world sizes needs, and how this spec provides it:

- the global batch is constant: each rank takes ``GLOBAL_BATCH // world_size`` samples
  per step, and the resumable sampler skips the samples consumed over all ranks, so
  every step trains the same global set of samples whatever the world size (which rank
  trains which sample changes);
- no dropout: a rank's random stream would decide its masks, and the streams of 2 ranks
  cannot become the stream of 1. Without dropout the weights after a resume on another
  world size differ from the reference only by the rounding of the gradient reduction;
- a rank that did not exist in the stop run starts a fresh random stream; the others
  restore their own.

The verdict compares the world-size-independent metrics (step, learning rates, scheduler,
norms, the mean loss over ranks, the global sample ledger) and lists the per-rank ones
it leaves out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

import harness_specs.tiny_lightning as tiny
from harness_specs.tiny_lightning import TinyDataModule, TinyLightningHarness, TinyRegressionModule

GLOBAL_BATCH = 8  # 2 ranks x 4, or 1 rank x 8


class ElasticRegressionModule(TinyRegressionModule):
    """The default module without dropout; ranks new to the run start a fresh stream."""

    def __init__(self) -> None:
        super().__init__()
        self.net[2].p = 0.0

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.consumed_samples = checkpoint["consumed_samples"]
        states = checkpoint["rng_states_per_rank"]
        rank = self.rank_for_rng()
        self.rng_to_restore = states[rank] if rank < len(states) else None


class ElasticDataModule(TinyDataModule):
    """Per-rank batches that hold the global batch at ``GLOBAL_BATCH`` for any world size."""

    def train_dataloader(self) -> DataLoader:
        world = self.trainer.world_size
        if GLOBAL_BATCH % world:
            raise ValueError(f"the global batch of {GLOBAL_BATCH} cannot be split over {world} ranks")
        sampler = self.train_sampler(self.trainer.lightning_module.consumed_samples)
        generator = torch.Generator().manual_seed(tiny.SEED)
        return DataLoader(
            self.train_set, batch_size=GLOBAL_BATCH // world, sampler=sampler, drop_last=True, generator=generator
        )


class ElasticLightningHarness(TinyLightningHarness):
    """The default harness, declared safe to resume with a different world size."""

    module_class = ElasticRegressionModule
    datamodule_class = ElasticDataModule
    supports_world_size_change = True

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "elastic_lightning")
        super().__init__(root_dir, **kwargs)
