"""Doctor pattern ``estimated-stepping-batches``: OneCycleLR sized by ``trainer.estimated_stepping_batches``."""

from typing import Any

import torch

from harness_specs.tiny_lightning import BASE_LR, TinyLightningHarness, TinyRegressionModule

EXPECTED = "estimated-stepping-batches"


class EstimatedStepsModule(TinyRegressionModule):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=BASE_LR)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=BASE_LR, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EstimatedStepsHarness(TinyLightningHarness):
    module_class = EstimatedStepsModule
