"""Mutant: the resume offset is applied again at every later epoch.

Bug class: Megatron-Bridge issue 4565. The sampler skips the samples consumed before the
resume in the epoch the resume fell in (right), and again at the start of every later
epoch (wrong), so each later epoch silently loses its first batches. Caught by the data
ledger (``sample_ledger``) at the first step of the next epoch (step 9).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DistributedSampler

from harness_specs.tiny_lightning import SEED, ResumableDistributedSampler, TinyDataModule, TinyLightningHarness

CAUGHT_BY = "sample_ledger"
BUG_CLASS = "resume offset re-applied every epoch (Megatron-Bridge 4565)"


class EveryEpochOffsetSampler(ResumableDistributedSampler):
    def __iter__(self) -> Iterator[int]:
        indices = list(DistributedSampler.__iter__(self))
        if self.epoch >= self.resume_epoch:  # the bug: ">=" where "==" was meant
            indices = indices[self.resume_offset :]
        return iter(indices)


class EveryEpochOffsetDataModule(TinyDataModule):
    def train_sampler(self, consumed: int) -> DistributedSampler:
        return EveryEpochOffsetSampler(
            self.train_set,
            consumed_samples=consumed,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=True,
            seed=SEED,
            drop_last=True,
        )


class OffsetEveryEpochHarness(TinyLightningHarness):
    datamodule_class = EveryEpochOffsetDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "offset_every_epoch")
        super().__init__(root_dir, **kwargs)
