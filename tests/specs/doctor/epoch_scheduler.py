"""Doctor pattern ``epoch-scheduler-mid-epoch-stop``: a scheduler stepped per epoch, a mid-epoch stop."""

from typing import Any

import torch

from harness_specs.tiny_lightning import BASE_LR, TinyLightningHarness, TinyRegressionModule

EXPECTED = "epoch-scheduler-mid-epoch-stop"


class EpochSchedulerModule(TinyRegressionModule):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=BASE_LR)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class EpochSchedulerHarness(TinyLightningHarness):
    module_class = EpochSchedulerModule
