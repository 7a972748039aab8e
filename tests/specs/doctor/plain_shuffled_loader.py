"""Doctor pattern ``train-loader-not-stateful``: a plain ``DataLoader(shuffle=True)``."""

import torch
from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, TinyDataModule, TinyLightningHarness

EXPECTED = "train-loader-not-stateful"


class PlainLoaderDataModule(TinyDataModule):
    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(SEED)
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, shuffle=True, generator=generator)


class PlainLoaderHarness(TinyLightningHarness):
    datamodule_class = PlainLoaderDataModule
