"""A user's ordinary Lightning script: ``trainer.fit(model, dm)``, nothing about resuming.

A ``LightningDataModule`` with a resumable loader (torchdata's ``StatefulDataLoader``,
whose position Lightning saves), a ``ModelCheckpoint`` every 3 steps with its defaults
(the logger's ``lightning_logs/version_N/checkpoints``, no ``last.ckpt``), and ``fit``
without ``ckpt_path``. Under ``stop-and-go run`` go resumes it from the stop's checkpoint.

    python datamodule_train.py
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader


class Regression(pl.LightningModule):
    """A small regression model with AdamW and a step-wise learning-rate decay."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class RegressionData(pl.LightningDataModule):
    """128 fixed samples, shuffled by a seeded generator."""

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(128, 8, generator=generator)
        self.train_set = TensorDataset(x, x.sum(dim=1, keepdim=True))

    def train_dataloader(self) -> StatefulDataLoader:
        generator = torch.Generator().manual_seed(1)
        return StatefulDataLoader(self.train_set, batch_size=4, shuffle=True, generator=generator)


def main() -> None:
    pl.seed_everything(0)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=8,
        callbacks=[ModelCheckpoint(every_n_train_steps=3)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regression(), RegressionData())


if __name__ == "__main__":
    main()
