"""The default spec: a small regression MLP trained with DDP on CPU (gloo).

What it exercises, and why each piece is there:

- deterministic synthetic data, sharded by a ``DistributedSampler`` (2 ranks x 4 samples
  per step, 8 steps per epoch, 12 steps in all, so go crosses an epoch boundary);
- Adam, so a resume must restore per-parameter moments;
- linear warmup then cosine decay, stepped every optimizer step, so the learning rate
  differs at every step and a scheduler restored wrong shows at once;
- a validation and a checkpoint every ``val_check_interval`` (2) steps;
- a resumable sampler: the module counts consumed samples and saves them in the
  checkpoint, and the sampler starts mid-epoch from them after a resume (the Megatron
  way). Lightning alone restarts a plain sampler at batch 0 of the epoch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from workers import Mode, StopAndGoHarness, torchrun_trainer_kwargs

SEED = 1234
FEATURES = 8
TRAIN_SAMPLES = 64
VAL_SAMPLES = 16
BATCH_SIZE = 4  # per rank
MAX_STEPS = 12
WARMUP_STEPS = 4
BASE_LR = 0.05


class SyntheticRegression(Dataset):
    """A fixed random linear problem with noise; item ``i`` is the same in every process."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, FEATURES, generator=generator)
        weights = torch.randn(FEATURES, 1, generator=generator)
        self.y = self.x @ weights + 0.1 * torch.randn(size, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"idx": index, "x": self.x[index], "y": self.y[index]}


class ResumableDistributedSampler(DistributedSampler):
    """A ``DistributedSampler`` that skips the samples consumed before a resume.

    ``consumed_samples`` counts samples over all ranks since training began. The skip
    applies only to the epoch the resume falls in; later epochs start at their beginning.
    """

    def __init__(self, dataset: Dataset, consumed_samples: int = 0, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        epoch_size = self.num_samples * self.num_replicas
        self.resume_epoch, consumed_in_epoch = divmod(consumed_samples, epoch_size)
        self.resume_offset = consumed_in_epoch // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.epoch == self.resume_epoch:
            indices = indices[self.resume_offset :]
        return iter(indices)


class TinyRegressionModule(pl.LightningModule):
    """A two-layer MLP with Adam and a warmup-then-cosine schedule stepped per step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 32), nn.Tanh(), nn.Linear(32, 1))
        self.consumed_samples = 0

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        self.consumed_samples += len(batch["idx"]) * self.trainer.world_size
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        self.log("val_loss", loss, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=BASE_LR)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["consumed_samples"] = self.consumed_samples

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.consumed_samples = checkpoint["consumed_samples"]


def warmup_cosine(step: int) -> float:
    """LR multiplier: linear warmup over ``WARMUP_STEPS``, then cosine decay to 10%."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, MAX_STEPS - WARMUP_STEPS))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


class TinyDataModule(pl.LightningDataModule):
    """Train and validation loaders; the train sampler resumes from consumed samples."""

    def __init__(self) -> None:
        super().__init__()
        self.train_set = SyntheticRegression(TRAIN_SAMPLES, seed=SEED)
        self.val_set = SyntheticRegression(VAL_SAMPLES, seed=SEED + 1)

    def train_dataloader(self) -> DataLoader:
        # Called after the checkpoint is restored, so the module's count is the resumed one.
        consumed = self.trainer.lightning_module.consumed_samples
        sampler = ResumableDistributedSampler(
            self.train_set,
            consumed_samples=consumed,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=True,
            seed=SEED,
            drop_last=True,
        )
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        sampler = DistributedSampler(
            self.val_set, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=False
        )
        return DataLoader(self.val_set, batch_size=BATCH_SIZE, sampler=sampler)


def get_consumed_samples(trainer: pl.Trainer, module: pl.LightningModule) -> int:
    """Samples consumed by training so far, over all ranks."""
    return int(module.consumed_samples)


def _digest(tensors: Iterator[torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for tensor in tensors:
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def get_weights_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of every parameter's bytes: equal only for bit-identical weights."""
    return _digest(p for p in module.parameters())


def get_optimizer_state_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of Adam's per-parameter moments (``exp_avg`` and ``exp_avg_sq``)."""
    optimizer = trainer.optimizers[0]
    states = (optimizer.state.get(p, {}) for group in optimizer.param_groups for p in group["params"])
    return _digest(t for state in states for key, t in sorted(state.items()) if key.startswith("exp_avg"))


class TinyLightningHarness(StopAndGoHarness):
    """The default harness: stop at step 2, resume, finish 12 steps on 2 CPU ranks."""

    module_class: type[TinyRegressionModule] = TinyRegressionModule

    def __init__(self, root_dir: Any = "./stop_and_go", val_check_interval: int = 2, **kwargs: Any) -> None:
        extra = {
            "consumed_samples": get_consumed_samples,
            "weights_digest": get_weights_digest,
            "optimizer_state_digest": get_optimizer_state_digest,
        }
        extra.update(kwargs.pop("extra_metrics_dict", None) or {})
        kwargs.setdefault("exp_name", "tiny_lightning")
        super().__init__(root_dir, val_check_interval, extra_metrics_dict=extra, **kwargs)

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        return self.module_class(), TinyDataModule(), None

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            deterministic=True,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=self.get_callbacks(mode),
            **torchrun_trainer_kwargs(),
        )
