"""Mutant: the LR scheduler is never checkpointed, so it restarts after a resume.

Bug class: Lightning issue 4655 (a scheduler Lightning does not know about is not saved).
The module steps its warmup scheduler by hand. The optimizer's learning rate is restored,
so the resume point looks right, but the fresh scheduler sets the warmup's first rate at
its next step. Caught by ``learning_rate`` at the first step after the resume.
"""

from __future__ import annotations

from typing import Any

from harness_specs.broken_scheduler import UncheckpointedSchedulerModule
from harness_specs.tiny_lightning import TinyLightningHarness

CAUGHT_BY = "learning_rate"
EXPECTED_CAUSE = "scheduler_not_restored"
BUG_CLASS = "LR scheduler not restored (Lightning 4655)"


class SchedulerNotRestoredHarness(TinyLightningHarness):
    module_class = UncheckpointedSchedulerModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "scheduler_not_restored")
        super().__init__(root_dir, **kwargs)
