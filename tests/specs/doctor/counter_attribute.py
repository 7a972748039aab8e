"""Doctor pattern ``state-outside-state-dict``: a counter attribute a checkpoint never carries."""

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

EXPECTED = "state-outside-state-dict"


class CountingModule(TinyRegressionModule):
    def __init__(self) -> None:
        super().__init__()
        self.samples_seen = 0

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.samples_seen += len(batch["idx"])
        return super().training_step(batch, batch_idx)


class CounterHarness(TinyLightningHarness):
    module_class = CountingModule
