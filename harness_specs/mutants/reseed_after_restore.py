"""Mutant: user code re-seeds the random generators after the checkpoint restored them.

Bug class: seeding in a hook that also runs on a resume. The setup saves and restores every
rank's RNG (``RngStateCallback``), but the module calls ``seed_everything`` in its own
``on_fit_start``, which Lightning runs after the callbacks' (the restore), so the resumed
run draws a fresh seed's dropout masks. Caught by ``rng_torch`` at the resume point; the
RNG states the kit restored (``rng_restored``) show the restore itself was right.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from harness_specs.tiny_lightning import SEED, TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "rng_torch"
EXPECTED_CAUSE = "rng_reseeded"
CAUGHT_AT = "resume"
BUG_CLASS = "user code re-seeds after the RNG restore (RngStateCallback in place)"


class ReseedingModule(TinyRegressionModule):
    def on_fit_start(self) -> None:
        pl.seed_everything(SEED + self.global_rank, verbose=False)  # the bug: runs on a resume too


class ReseedAfterRestoreHarness(TinyLightningHarness):
    module_class = ReseedingModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "reseed_after_restore")
        super().__init__(root_dir, **kwargs)
