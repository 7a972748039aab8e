"""Mutant: the gradient-accumulation counter is reset mid-window on resume.

Bug class: accumulation state lost on resume. The spec accumulates 2 micro-batches per
optimizer step; the resumed run's micro-batch counter comes back as if one micro-batch
of a window were already accumulated, so its windows straddle the continuous run's: its
first step after the resume uses a single micro-batch. Caught by ``grad_accum_micro_batches`` (the micro-batches that
went into a step) at the first step after the resume.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "grad_accum_micro_batches"
EXPECTED_CAUSE = "grad_accumulation"
BUG_CLASS = "gradient-accumulation counter reset mid-window"


class ResetAccumulationModule(TinyRegressionModule):
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # Lightning steps when its in-epoch micro-batch count fills a window.
        current = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
        for key in current:  # the bug: the count comes back one micro-batch into a window
            current[key] += 1


class GradAccumResetHarness(TinyLightningHarness):
    module_class = ResetAccumulationModule
    accumulate_grad_batches = 2

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "grad_accum_reset")
        super().__init__(root_dir, **kwargs)
