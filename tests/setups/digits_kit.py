"""``digits_plain.py`` ported with ``workers.kit``: the loaders and one callback change.

- the train loader: ``ResumableLoader`` (a torchdata ``StatefulDataLoader`` with a seeded
  DDP-aware sampler) instead of ``DataLoader(shuffle=True)``; Lightning saves its position;
- the validation loader: ``ResumableLoader(shuffle=False)``, which owns its generator, so
  a validation no longer draws from the global RNG;
- ``RngStateCallback``: every rank's RNG (dropout) in the checkpoint.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from tests.setups.digits_plain import BATCH_SIZE, SEED, DigitsData, DigitsHarness
from workers import Mode
from workers.kit import ResumableLoader, RngStateCallback


class ResumableDigitsData(DigitsData):
    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, num_workers=2)

    def val_dataloader(self) -> DataLoader:
        return ResumableLoader(self.val_set, batch_size=BATCH_SIZE, shuffle=False)


class ResumableDigitsHarness(DigitsHarness):
    datamodule_class = ResumableDigitsData

    def trainer_callbacks(self, mode: Mode) -> list[pl.Callback]:
        return [RngStateCallback(seed=SEED), *self.get_callbacks(mode)]
