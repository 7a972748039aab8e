"""The default spec made elastic: it may resume with another number of ranks.

Run it with ``--go-nproc-per-node`` (e.g. stop on 2 ranks, go on 1, or 1 on 2). What a
resume across world sizes needs, and how this spec provides it:

- the global batch is constant: each rank takes ``GLOBAL_BATCH // world_size`` samples
  per step, and the kit's sampler saves its position as samples consumed over all ranks,
  so every step trains the same global set of samples whatever the world size (which
  rank trains which sample changes);
- no dropout: a rank's random stream would decide its masks, and the streams of 2 ranks
  cannot become the stream of 1. Without dropout the weights after a resume on another
  world size differ from the reference only by the rounding of the gradient reduction;
- a rank that did not exist in the stop run starts a fresh random stream; the others
  restore their own (``RngStateCallback``).

The verdict compares the world-size-independent metrics (step, learning rates, scheduler,
norms, the mean loss over ranks, the global sample ledger) and lists the per-rank ones
it leaves out.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

import harness_specs.tiny_lightning as tiny
from harness_specs.tiny_lightning import TinyDataModule, TinyLightningHarness, TinyRegressionModule
from workers.kit import ResumableLoader

GLOBAL_BATCH = 8  # 2 ranks x 4, or 1 rank x 8


class ElasticRegressionModule(TinyRegressionModule):
    """The default module without dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.net[2].p = 0.0


class ElasticDataModule(TinyDataModule):
    """Per-rank batches that hold the global batch at ``GLOBAL_BATCH`` for any world size."""

    def train_dataloader(self) -> DataLoader:
        world = self.trainer.world_size
        if GLOBAL_BATCH % world:
            raise ValueError(f"the global batch of {GLOBAL_BATCH} cannot be split over {world} ranks")
        return ResumableLoader(self.train_set, batch_size=GLOBAL_BATCH // world, seed=tiny.SEED, drop_last=True)


class ElasticLightningHarness(TinyLightningHarness):
    """The default harness, declared safe to resume with a different world size."""

    module_class = ElasticRegressionModule
    datamodule_class = ElasticDataModule
    supports_world_size_change = True

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "elastic_lightning")
        super().__init__(root_dir, **kwargs)
