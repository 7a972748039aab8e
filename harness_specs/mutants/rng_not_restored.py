"""Mutant: the RNG states are not restored, with dropout on.

Bug class: RNG state missing from the checkpoint (Lightning saves none by default). The
resumed run re-seeds its generators instead of restoring them, so its dropout masks
differ from those of a continuous run. Caught by ``rng_torch`` at the resume point.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from harness_specs.tiny_lightning import SEED, TinyLightningHarness
from workers.kit import RngStateCallback, seed_rank

CAUGHT_BY = "rng_torch"
EXPECTED_CAUSE = "rng_not_restored"
CAUGHT_AT = "resume"
BUG_CLASS = "RNG not restored, with dropout on"


class UnrestoredRngCallback(RngStateCallback):
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed_rank(SEED, trainer.global_rank)  # the bug: re-seeded, never restored


class RngNotRestoredHarness(TinyLightningHarness):
    rng_callback_class = UnrestoredRngCallback

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "rng_not_restored")
        super().__init__(root_dir, **kwargs)
