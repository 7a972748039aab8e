"""An ordinary Lightning classifier, as a user writes it, not made resumable.

A digits-like dataset (8x8 images, 10 classes: a prototype per class plus noise), an MLP
with dropout, a shuffled ``DataLoader`` with 2 workers, AdamW and OneCycleLR stepped every
step. Nothing in it saves the loader's position or the RNG: a stop-and-go run fails.
``digits_kit.py`` is the same setup ported with ``workers.kit``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from workers import Mode, StopAndGoHarness, torchrun_trainer_kwargs

SEED, MAX_STEPS, BATCH_SIZE, LR = 0, 12, 8, 0.01


def digits(size: int, seed: int) -> TensorDataset:
    """``size`` noisy 8x8 digits, flattened: the same in every process."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, 64, generator=generator)
    labels = torch.arange(size) % 10
    return TensorDataset(prototypes[labels] + 0.3 * torch.randn(size, 64, generator=generator), labels)


class DigitsClassifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y), sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=LR)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=MAX_STEPS + 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DigitsData(pl.LightningDataModule):
    def setup(self, stage: str) -> None:
        self.train_set, self.val_set = digits(64, SEED), digits(16, SEED + 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=2)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=BATCH_SIZE)


class DigitsHarness(StopAndGoHarness):
    datamodule_class: type[pl.LightningDataModule] = DigitsData

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        return DigitsClassifier(), self.datamodule_class(), None

    def trainer_callbacks(self, mode: Mode) -> list[pl.Callback]:
        return self.get_callbacks(mode)

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval,
            num_sanity_val_steps=0,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=self.trainer_callbacks(mode),
            **torchrun_trainer_kwargs(),
        )
