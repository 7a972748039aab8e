"""Test spec: an epoch-bounded run over a stream, as in pre-training: ``max_epochs=3``, no ``max_steps``.

The train data is an ``IterableDataset`` without a length (a stream read again each epoch:
``SAMPLES_PER_EPOCH`` samples, the same order every epoch, split over the ranks by
position), so Lightning cannot tell the run's last step or the steps in an epoch up
front. The stream resumes mid-epoch as Megatron-style pre-training does: its position is
derived from the restored global step (the loader is built after the restore), not from
a loader state, which Lightning would save one batch ahead (it prefetches a batch of a
loader without a length to see the epoch's end). On one rank: 4 steps an epoch, 12 steps,
a validation and a checkpoint every 2 steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from workers import Mode, RngStateCallback, StopAndGoHarness, torchrun_trainer_kwargs

SEED, FEATURES, SAMPLES_PER_EPOCH, BATCH_SIZE, MAX_EPOCHS = 7, 8, 8, 2, 3  # BATCH_SIZE: per rank


def samples(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed noisy linear problem: ``count`` inputs and targets."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, FEATURES, generator=generator)
    return x, x @ torch.randn(FEATURES, 1, generator=generator) + 0.1 * torch.randn(count, 1, generator=generator)


def world() -> tuple[int, int]:
    """(rank, world size): fit has started the process group by the time the stream is read."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


class RegressionStream(IterableDataset):
    """Yields this rank's share of the epoch's samples (every world-th, from its rank), with ids.

    ``skip`` samples of this rank's share are left out of the next pass only: where a
    resumed epoch goes on.
    """

    def __init__(self) -> None:
        self.x, self.y = samples(SAMPLES_PER_EPOCH, SEED)
        self.skip = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, size = world()
        skip, self.skip = self.skip, 0
        for index in list(range(rank, SAMPLES_PER_EPOCH, size))[skip:]:
            yield {"idx": index, "x": self.x[index], "y": self.y[index]}


class StreamModule(pl.LightningModule):
    """A small MLP with SGD and momentum, and a step-wise LR decay."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, 1))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.mse_loss(self.net(batch["x"]), batch["y"])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.7)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class StreamDataModule(pl.LightningDataModule):
    """The stream for training, a small fixed set for validation."""

    def train_dataloader(self) -> DataLoader:
        # Called after a resume's restore: the restored step places the stream in its epoch.
        stream = RegressionStream()
        steps_per_epoch = SAMPLES_PER_EPOCH // (world()[1] * BATCH_SIZE)
        stream.skip = self.trainer.global_step % steps_per_epoch * BATCH_SIZE
        # Its own generator: a loader without one draws its workers' seed from the global RNG at every pass.
        return DataLoader(stream, batch_size=BATCH_SIZE, generator=torch.Generator().manual_seed(SEED))

    def val_dataloader(self) -> DataLoader:
        val_set = TensorDataset(*samples(4, SEED + 1))
        return DataLoader(val_set, batch_size=BATCH_SIZE, generator=torch.Generator().manual_seed(SEED))


class StreamEpochsHarness(StopAndGoHarness):
    """Three epochs of a stream, bounded by ``max_epochs`` only."""

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "stream_epochs")
        super().__init__(root_dir, val_check_interval=2, **kwargs)

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        return StreamModule(), StreamDataModule(), None

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_epochs=MAX_EPOCHS,  # no max_steps: the stream's length ends each epoch
            val_check_interval=self.val_check_interval,
            check_val_every_n_epoch=None,  # an int interval over a stream counts batches across epochs
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # the stream splits itself by rank
            deterministic=True,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[RngStateCallback(seed=SEED), *self.get_callbacks(mode)],
            **torchrun_trainer_kwargs(),
        )
