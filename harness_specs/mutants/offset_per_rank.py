"""Mutant: the resume offset is computed per rank instead of over all ranks.

Bug class: a consumed-samples offset turned into one rank's share twice. The sampler's
state is the count of samples consumed over all ranks (16 after 2 steps of 2 ranks x 4);
its ``load_state_dict`` divides it by the number of ranks before seeking, but ``seek``
already takes the count over all ranks, so the resumed run starts at 8 of 16 and trains
step 2's samples again. Caught by ``consumed_samples`` at the resume point (saved 16,
resumed 8).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, TinyDataModule, TinyLightningHarness
from workers.kit import ResumableLoader, ResumableSampler

CAUGHT_BY = "consumed_samples"
EXPECTED_CAUSE = "offset_per_rank"
CAUGHT_AT = "resume"
MIN_RANKS = 2  # with one rank, one rank's share is the whole count
BUG_CLASS = "resume offset computed per rank instead of over all ranks"


class PerRankOffsetSampler(ResumableSampler):
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The bug: this rank's share of the count, though seek() takes the count over all ranks.
        self.seek(state_dict["consumed_samples"] // self.num_replicas)


class PerRankOffsetDataModule(TinyDataModule):
    def train_dataloader(self) -> DataLoader:
        sampler = PerRankOffsetSampler(self.train_set, seed=SEED, drop_last=True)
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, sampler=sampler, drop_last=True)


class OffsetPerRankHarness(TinyLightningHarness):
    datamodule_class = PerRankOffsetDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "offset_per_rank")
        super().__init__(root_dir, **kwargs)
