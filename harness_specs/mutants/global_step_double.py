"""Mutant: the global step is incremented twice on the resume.

Bug class: Lightning issue 19403 (global_step advanced twice around a resume). The
resumed run counts one optimizer step that never happened, so it stops a step early and
every step after the resume is numbered one too high. Caught by ``global_step``: the
resumed run never records step 3.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "global_step"
EXPECTED_CAUSE = "global_step_off"
BUG_CLASS = "global_step double-incremented on resume (Lightning 19403)"
# Its bug acts only on a resume: its continuous run is the default spec's (self-test reuses it).
SHARES_REFERENCE = "../tiny_lightning.py"


class DoubleStepModule(TinyRegressionModule):
    def on_train_start(self) -> None:
        if self.trainer.ckpt_path is not None:  # the bug: one more step counted on resume
            progress = self.trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress
            progress.optimizer.step.increment_completed()


class GlobalStepDoubleHarness(TinyLightningHarness):
    module_class = DoubleStepModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "global_step_double")
        super().__init__(root_dir, **kwargs)
