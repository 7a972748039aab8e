"""The plain script with a classic resume bug: a scheduler stepped by hand, not in the checkpoint.

Lightning only saves the schedulers ``configure_optimizers`` returns; this one is kept
on the module and stepped in a hook, so a resume starts it over at the first rate.
"""

from __future__ import annotations

import torch
from plain_train import Regression, main


class HandSteppedScheduler(Regression):
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=0.05)
        self.decay = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return optimizer

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.decay.step()


if __name__ == "__main__":
    main(HandSteppedScheduler)
