"""Every rank's random streams in the checkpoint: ``RngStateCallback``.

Lightning saves no RNG state, and only rank 0 writes the checkpoint file, so a resumed
run draws other dropout masks (and augmentations) than a continuous one. The callback
gathers the Python, numpy, torch CPU and (where present) CUDA generator states of every
rank into the checkpoint when it is saved, and each rank restores its own when training
resumes. The states are stored as ints, lists and tensors, which
``torch.load(weights_only=True)`` (Lightning's default) accepts.

With ``seed`` set, a fresh (not resumed) run gives each rank its own streams after the
shared model initialisation (``seed + 1000 * (rank + 1)``), so the ranks' dropout masks
differ; without it the streams are left as the run set them.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from workers.metrics import rng_digests

CHECKPOINT_KEY = "rng_states_per_rank"


def rng_states() -> dict[str, Any]:
    """This process's Python, numpy, torch (and CUDA) random states, as plain data and tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": (int(version), list(internal), gauss),
        "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores states taken by ``rng_states``."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def seed_rank(seed: int, rank: int) -> None:
    """Gives ``rank`` its own Python, numpy and torch streams, derived from ``seed``."""
    rank_seed = seed + 1000 * (rank + 1)
    random.seed(rank_seed)
    np.random.seed(rank_seed)
    torch.manual_seed(rank_seed)


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's RNG states, indexed by rank (a collective: every rank must call it)."""
    states = rng_states()
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [states]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, states)
    return gathered


class RngStateCallback(Callback):
    """Saves every rank's RNG states in the checkpoint and restores each rank's own on resume.

    Args:
        seed: when given, a fresh run re-seeds each rank distinctly at fit start.

    A rank that did not exist when the checkpoint was saved (a resume on more ranks)
    starts fresh streams as in a fresh run.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.to_restore: dict[str, Any] | None = None
        # What was restored, as digests: the diagnosis's evidence (``rng_restored``) that a
        # different state at train start was drawn or re-seeded after the restore.
        self.restored_rng_digests: dict[str, str] | None = None

    def rank_to_restore(self, trainer: pl.Trainer) -> int:
        """Whose saved states this rank restores: its own."""
        return trainer.global_rank

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Every rank runs this hook; only rank 0 writes the file, so all ranks' states go in."""
        checkpoint[CHECKPOINT_KEY] = gather_rng_states()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Picks this rank's saved states; they are set at fit start."""
        states = checkpoint.get(CHECKPOINT_KEY)
        if not states:
            rank_zero_warn("RngStateCallback: the checkpoint holds no RNG states; the streams start fresh")
            return
        rank = self.rank_to_restore(trainer)
        self.to_restore = states[rank] if rank < len(states) else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restores (or seeds) the streams: not earlier, as DDP's setup re-seeds every rank alike."""
        if self.to_restore is not None:
            set_rng_states(self.to_restore)
            self.restored_rng_digests = rng_digests()
        elif self.seed is not None:
            seed_rank(self.seed, trainer.global_rank)
