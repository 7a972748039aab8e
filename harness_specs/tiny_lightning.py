"""The default spec: a small regression MLP trained with DDP on CPU (gloo), resumable by ``workers.kit``.

- synthetic data shuffled and sharded by the kit's ``ResumableLoader``, whose position
  Lightning saves and restores (2 ranks x 4 samples a step, 8 steps an epoch, 12 steps);
- Adam and a warmup-then-cosine LR stepped every step: a wrong restore shows at once;
- a validation and a checkpoint every 2 steps, each validation on the next slice of the
  val set (``RotatingValSampler``, placed by the restored step);
- dropout with a stream per rank, saved and restored per rank by ``RngStateCallback``;
- an EMA of the weights in a buffer, which the checkpoint must carry.

The mutants (``harness_specs/mutants/``) subclass it, each adding one resume bug.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import Precision
from torch import nn
from torch.utils.data import DataLoader, Dataset

from workers import Mode, StopAndGoHarness, torchrun_trainer_kwargs
from workers.kit import ResumableLoader, RngStateCallback, RotatingValSampler, consumed_samples, validations_before

SEED, FEATURES, HIDDEN, DROPOUT, EMA_DECAY = 1234, 8, 32, 0.1, 0.9
TRAIN_SAMPLES, VAL_SAMPLES, BATCH_SIZE = 64, 16, 4  # BATCH_SIZE: per rank
MAX_STEPS, WARMUP_STEPS, BASE_LR = 12, 4, 0.05
VAL_SAMPLES_PER_CHECK = 8  # over all ranks: each validation sees one slice of the val set


class SyntheticRegression(Dataset):
    """A fixed random linear problem with noise; item ``i`` (with its id) is the same everywhere."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, FEATURES, generator=generator)
        weights = torch.randn(FEATURES, 1, generator=generator)
        self.y = self.x @ weights + 0.1 * torch.randn(size, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"idx": index, "x": self.x[index], "y": self.y[index]}


class TinyRegressionModule(pl.LightningModule):
    """A small MLP with dropout, an EMA of its weights, Adam and a warmup-then-cosine schedule."""

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Linear(FEATURES, HIDDEN), nn.Tanh(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, HIDDEN), nn.Tanh()]
        self.net = nn.Sequential(*layers, nn.Linear(HIDDEN, 1))
        self.register_ema_buffer()

    def register_ema_buffer(self) -> None:
        """The EMA of the weights: a persistent buffer, so the checkpoint carries it."""
        self.register_buffer("ema_weights", self.flat_weights().clone())

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.net.parameters()])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Not in on_train_batch_end: the checkpoint is saved before that hook runs.
        self.ema_weights.mul_(EMA_DECAY).add_(self.flat_weights(), alpha=1.0 - EMA_DECAY)
        return nn.functional.mse_loss(self.net(batch["x"]), batch["y"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", nn.functional.mse_loss(self.net(batch["x"]), batch["y"]), sync_dist=True)

    def validation_position(self) -> int:
        """How many validations came before this one (from the restored global step)."""
        return validations_before(self.trainer)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=BASE_LR)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine(step: int) -> float:
    """LR multiplier: linear warmup over ``WARMUP_STEPS``, then cosine decay to 10%."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, MAX_STEPS - WARMUP_STEPS))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


class TinyDataModule(pl.LightningDataModule):
    """A resumable train loader and a validation that walks through the val set."""

    def __init__(self) -> None:
        super().__init__()
        self.train_set = SyntheticRegression(TRAIN_SAMPLES, seed=SEED)
        self.val_set = SyntheticRegression(VAL_SAMPLES, seed=SEED + 1)

    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        position = self.trainer.lightning_module.validation_position
        sampler = RotatingValSampler(len(self.val_set), VAL_SAMPLES_PER_CHECK, position)
        # Its own generator: a loader without one draws its seed from the global RNG.
        return DataLoader(self.val_set, BATCH_SIZE, sampler=sampler, generator=torch.Generator().manual_seed(SEED))


class TinyLightningHarness(StopAndGoHarness):
    """The default harness: stop at step 2, resume, finish 12 steps on 2 CPU ranks."""

    module_class: type[TinyRegressionModule] = TinyRegressionModule
    datamodule_class: type[TinyDataModule] = TinyDataModule
    rng_callback_class: type[RngStateCallback] = RngStateCallback
    accumulate_grad_batches = 1

    def __init__(self, root_dir: Any = "./stop_and_go", val_check_interval: int = 2, **kwargs: Any) -> None:
        # The train loader's position, samples over all ranks: the same on every rank.
        extra = {"consumed_samples": consumed_samples, **(kwargs.pop("extra_metrics_dict", None) or {})}
        kwargs.setdefault("exp_name", "tiny_lightning")
        super().__init__(root_dir, val_check_interval, extra_metrics_dict=extra, **kwargs)
        self.metric_scopes["consumed_samples"] = "global"

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        return self.module_class(), self.datamodule_class(), None

    def precision_plugin(self) -> Precision | None:
        """None: full precision (the AMP mutant returns fp16 with a scaler)."""
        return None

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        plugin = self.precision_plugin()
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval * self.accumulate_grad_batches,
            accumulate_grad_batches=self.accumulate_grad_batches,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # the samplers shard by rank themselves
            deterministic=True,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[self.rng_callback_class(seed=SEED), *self.get_callbacks(mode)],
            plugins=[plugin] if plugin is not None else None,
            **torchrun_trainer_kwargs(),
        )
