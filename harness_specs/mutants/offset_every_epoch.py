"""Mutant: the resume offset is applied again at every later epoch.

Bug class: Megatron-Bridge issue 4565. The sampler skips the samples consumed before the
resume in the epoch the resume fell in (right), and again at the start of every later
epoch (wrong), so each later epoch silently loses its first batches. Caught by the data
ledger (``sample_ledger``) at the first step of the next epoch (step 9).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, TinyDataModule, TinyLightningHarness
from workers.kit import ResumableLoader, ResumableSampler

CAUGHT_BY = "sample_ledger"
EXPECTED_CAUSE = "sampler_offset"
# Its bug shows after an epoch boundary: within the run's 12 steps only with 2 ranks or more
# (an epoch is 8 steps with two ranks, 16 with one).
MIN_RANKS = 2
BUG_CLASS = "resume offset re-applied every epoch (Megatron-Bridge 4565)"
# Its bug acts only on a resume: its continuous run is the default spec's (self-test reuses it).
SHARES_REFERENCE = "../tiny_lightning.py"


class EveryEpochOffsetSampler(ResumableSampler):
    resume_offset: int | None = None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.resume_offset = self.next_yielded

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if self.resume_offset:  # the bug: the offset is kept for every later epoch
            self.next_yielded = self.resume_offset


class EveryEpochOffsetDataModule(TinyDataModule):
    def train_dataloader(self) -> DataLoader:
        sampler = EveryEpochOffsetSampler(self.train_set, seed=SEED, drop_last=True)
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, sampler=sampler, drop_last=True)


class OffsetEveryEpochHarness(TinyLightningHarness):
    datamodule_class = EveryEpochOffsetDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "offset_every_epoch")
        super().__init__(root_dir, **kwargs)
