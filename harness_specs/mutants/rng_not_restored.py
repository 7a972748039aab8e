"""Mutant: the RNG states are not restored, with dropout on.

Bug class: RNG state missing from the checkpoint (Lightning saves none by default). The
resumed run re-seeds its generators instead of restoring them, so its dropout masks
differ from those of a continuous run. Caught by ``rng_torch`` at the resume point.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule, seed_rank_streams

CAUGHT_BY = "rng_torch"
CAUGHT_AT = "resume"
BUG_CLASS = "RNG not restored, with dropout on"


class UnrestoredRngModule(TinyRegressionModule):
    def on_fit_start(self) -> None:
        seed_rank_streams(self.trainer.global_rank)  # the bug: re-seeded, never restored


class RngNotRestoredHarness(TinyLightningHarness):
    module_class = UnrestoredRngModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "rng_not_restored")
        super().__init__(root_dir, **kwargs)
