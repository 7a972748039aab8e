"""Doctor pattern ``sampler-without-set-epoch``: a custom shuffling sampler with no ``set_epoch``."""

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, TinyDataModule, TinyLightningHarness

EXPECTED = "sampler-without-set-epoch"


class OncePermutedSampler(Sampler[int]):
    def __init__(self, size: int) -> None:
        self.order = torch.randperm(size, generator=torch.Generator().manual_seed(SEED)).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class NoSetEpochDataModule(TinyDataModule):
    def train_dataloader(self) -> DataLoader:
        sampler = OncePermutedSampler(len(self.train_set))
        generator = torch.Generator().manual_seed(SEED)
        return StatefulDataLoader(self.train_set, batch_size=BATCH_SIZE, sampler=sampler, generator=generator)


class NoSetEpochHarness(TinyLightningHarness):
    datamodule_class = NoSetEpochDataModule
