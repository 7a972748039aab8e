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
  way). Lightning alone restarts a plain sampler at batch 0 of the epoch;
- dropout with a different random stream on each rank, so a resume must restore every
  rank's own RNG state: the module gathers all ranks' states into the checkpoint
  (Lightning saves none, and only rank 0 writes the file);
- an EMA of the weights kept in a buffer, which the checkpoint must carry;
- validation that walks through the validation set, one slice per validation, at a
  position derived from the restored global step;
- the data loaders own their generators, so iterating them never draws from the global
  RNG (the draw would differ between a resumed and a continuous run).

``accumulate_grad_batches`` and ``precision_plugin()`` on the harness let the mutants
(``harness_specs/mutants/``) turn on gradient accumulation and fp16 AMP with a scaler.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.plugins.precision import Precision
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from workers import Mode, StopAndGoHarness, torchrun_trainer_kwargs

SEED = 1234
FEATURES = 8
TRAIN_SAMPLES = 64
VAL_SAMPLES = 16
BATCH_SIZE = 4  # per rank
MAX_STEPS = 12
WARMUP_STEPS = 4
BASE_LR = 0.05
HIDDEN = 32
DROPOUT = 0.1
EMA_DECAY = 0.9
VAL_SAMPLES_PER_CHECK = 8  # over all ranks: each validation sees one slice of the val set


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


class RotatingValSampler(Sampler[int]):
    """Each validation sees the next ``VAL_SAMPLES_PER_CHECK`` samples of the val set.

    The position comes from ``position()`` (the number of validations before this one),
    read when a validation starts; the default spec derives it from the restored global
    step, so a resumed run validates on the same slice as a continuous one.
    """

    def __init__(self, size: int, num_replicas: int, rank: int, position: Any) -> None:
        self.size = size
        self.num_replicas = num_replicas
        self.rank = rank
        self.position = position

    def __iter__(self) -> Iterator[int]:
        start = self.position() * VAL_SAMPLES_PER_CHECK
        indices = [(start + i) % self.size for i in range(VAL_SAMPLES_PER_CHECK)]
        return iter(indices[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return VAL_SAMPLES_PER_CHECK // self.num_replicas


def rng_states() -> dict[str, Any]:
    """This process's Python, numpy and torch CPU random states, as plain data and tensors.

    Plain types only: Lightning loads checkpoints with ``weights_only=True``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores states taken by ``rng_states``."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])


def seed_rank_streams(rank: int) -> None:
    """Gives each rank its own random stream (after the shared model initialisation)."""
    seed = SEED + 1000 * (rank + 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's RNG states, indexed by rank (a collective: every rank must call it)."""
    states = rng_states()
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [states]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, states)
    return gathered


class TinyRegressionModule(pl.LightningModule):
    """A small MLP with dropout, an EMA of its weights, Adam and a warmup-then-cosine schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(FEATURES, HIDDEN),
            nn.Tanh(),
            nn.Dropout(DROPOUT),
            nn.Linear(HIDDEN, HIDDEN),
            nn.Tanh(),
            nn.Linear(HIDDEN, 1),
        )
        self.consumed_samples = 0
        self.rng_to_restore: dict[str, Any] | None = None
        self.register_ema_buffer()

    def register_ema_buffer(self) -> None:
        """The EMA of the weights: a persistent buffer, so the checkpoint carries it."""
        self.register_buffer("ema_weights", self.flat_weights().clone())

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.net.parameters()])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Updated here, not after the optimizer step: the checkpoint callback saves in
        # on_train_batch_end, before a module's own on_train_batch_end would run.
        self.ema_weights.mul_(EMA_DECAY).add_(self.flat_weights(), alpha=1.0 - EMA_DECAY)
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        self.consumed_samples += len(batch["idx"]) * self.trainer.world_size
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        self.log("val_loss", loss, sync_dist=True)

    def validation_position(self) -> int:
        """How many validations came before this one (from the restored global step)."""
        steps_per_validation = max(1, int(self.trainer.val_check_batch) // self.trainer.accumulate_grad_batches)
        return max(0, self.trainer.global_step // steps_per_validation - 1)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=BASE_LR)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["consumed_samples"] = self.consumed_samples
        # Every rank runs this hook; only rank 0 writes the file, so gather all ranks'.
        checkpoint["rng_states_per_rank"] = gather_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.consumed_samples = checkpoint["consumed_samples"]
        self.rng_to_restore = checkpoint["rng_states_per_rank"][self.rank_for_rng()]

    def on_fit_start(self) -> None:
        # Not earlier: the DDP strategy re-seeds every rank alike while it sets up.
        if self.rng_to_restore is not None:
            set_rng_states(self.rng_to_restore)
        else:
            seed_rank_streams(self.trainer.global_rank)

    def rank_for_rng(self) -> int:
        """Whose saved RNG states this rank restores: its own."""
        return int(os.environ.get("RANK", "0"))


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

    def train_sampler(self, consumed: int) -> DistributedSampler:
        return ResumableDistributedSampler(
            self.train_set,
            consumed_samples=consumed,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=True,
            seed=SEED,
            drop_last=True,
        )

    def train_dataloader(self) -> DataLoader:
        # Called after the checkpoint is restored, so the module's count is the resumed one.
        sampler = self.train_sampler(self.trainer.lightning_module.consumed_samples)
        generator = torch.Generator().manual_seed(SEED)
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, sampler=sampler, drop_last=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        sampler = RotatingValSampler(
            len(self.val_set),
            self.trainer.world_size,
            self.trainer.global_rank,
            self.trainer.lightning_module.validation_position,
        )
        generator = torch.Generator().manual_seed(SEED)
        return DataLoader(self.val_set, batch_size=BATCH_SIZE, sampler=sampler, generator=generator)


def get_consumed_samples(trainer: pl.Trainer, module: pl.LightningModule) -> int:
    """Samples consumed by training so far, over all ranks."""
    return int(module.consumed_samples)


class TinyLightningHarness(StopAndGoHarness):
    """The default harness: stop at step 2, resume, finish 12 steps on 2 CPU ranks."""

    module_class: type[TinyRegressionModule] = TinyRegressionModule
    datamodule_class: type[TinyDataModule] = TinyDataModule
    accumulate_grad_batches = 1

    def __init__(self, root_dir: Any = "./stop_and_go", val_check_interval: int = 2, **kwargs: Any) -> None:
        extra = {"consumed_samples": get_consumed_samples}
        extra.update(kwargs.pop("extra_metrics_dict", None) or {})
        kwargs.setdefault("exp_name", "tiny_lightning")
        super().__init__(root_dir, val_check_interval, extra_metrics_dict=extra, **kwargs)
        # Counted over all ranks: the same on every rank, whatever the world size.
        self.metric_scopes["consumed_samples"] = "global"

    def setup_model(self, mode: Mode) -> tuple[pl.LightningModule, pl.LightningDataModule, None]:
        pl.seed_everything(SEED, verbose=False)
        return self.module_class(), self.datamodule_class(), None

    def precision_plugin(self) -> Precision | None:
        """The precision plugin (None: full precision); the AMP mutant returns fp16 with a scaler."""
        return None

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        plugin = self.precision_plugin()
        return pl.Trainer(
            default_root_dir=self.root_dir,
            max_steps=MAX_STEPS,
            val_check_interval=self.val_check_interval * self.accumulate_grad_batches,
            accumulate_grad_batches=self.accumulate_grad_batches,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            deterministic=True,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=self.get_callbacks(mode),
            plugins=[plugin] if plugin is not None else None,
            **torchrun_trainer_kwargs(),
        )
