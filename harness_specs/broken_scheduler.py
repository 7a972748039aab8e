"""A spec with a real resume bug: the LR scheduler is never checkpointed.

The module builds its warmup scheduler itself and steps it by hand instead of returning
it from ``configure_optimizers``, a common pattern. Lightning therefore never saves its
state. After a resume the optimizer's learning rate is restored (so a check at the
resume point alone passes), but the fresh scheduler restarts the warmup at its next
step. The orchestrator must fail this spec with exit code 1 and name ``learning_rate``.
"""

from __future__ import annotations

from typing import Any

import torch

from harness_specs.tiny_lightning import BASE_LR, TinyLightningHarness, TinyRegressionModule, warmup_cosine


class UncheckpointedSchedulerModule(TinyRegressionModule):
    """Steps a scheduler that Lightning does not know about, so it is never saved."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=BASE_LR)
        self.manual_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return optimizer

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.manual_scheduler.step()


class BrokenSchedulerHarness(TinyLightningHarness):
    """The default harness with the uncheckpointed scheduler."""

    module_class = UncheckpointedSchedulerModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "broken_scheduler")
        super().__init__(root_dir, **kwargs)
