"""Mutant: the LR scheduler is restored one step behind.

Bug class: Lightning issue 5455 (scheduler state off by one after a resume). The
scheduler's saved counters are loaded one step short, while the optimizer's current
learning rate is restored exactly: the learning rate at the resume point is right, the
scheduler is not. Caught by ``lr_scheduler_state`` at the resume point.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "lr_scheduler_state"
EXPECTED_CAUSE = "scheduler_off_by_one"
CAUGHT_AT = "resume"
BUG_CLASS = "LR scheduler restored lagging one step (Lightning 5455)"


class LaggingSchedulerModule(TinyRegressionModule):
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for state in checkpoint["lr_schedulers"]:  # the bug: the counters lose a step
            state["last_epoch"] -= 1
            state["_step_count"] -= 1


class SchedulerLagHarness(TinyLightningHarness):
    module_class = LaggingSchedulerModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "scheduler_lag")
        super().__init__(root_dir, **kwargs)
