"""Test spec: a sampler that restores its position within the epoch but not the epoch.

A resume in epoch 0 (the first stop) is exact; a resume after an epoch boundary shuffles
with epoch 0's seed again, so only a run that resumes in a later epoch (the default
scenario's go1; ``--single-stop`` passes it) catches it, by the data ledger.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, TinyDataModule, TinyLightningHarness
from workers.kit import ResumableLoader, ResumableSampler


class EpochForgettingSampler(ResumableSampler):
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # The bug: the position inside the epoch is kept, the epoch itself is lost.
        self.seek(state_dict["consumed_samples"] % self.epoch_size)


class EpochForgettingDataModule(TinyDataModule):
    def train_dataloader(self) -> DataLoader:
        sampler = EpochForgettingSampler(self.train_set, seed=SEED, drop_last=True)
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, sampler=sampler, drop_last=True)


class EpochSeedNotRestoredHarness(TinyLightningHarness):
    datamodule_class = EpochForgettingDataModule
