"""Test spec: the default spec, plus numpy RNG state stored as is in the checkpoint.

``np.random.get_state()`` holds a numpy array, which ``torch.load(weights_only=True)``
refuses, so go could not load the checkpoint: stop's vetting must fail fast and name it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule


class NumpyStateModule(TinyRegressionModule):
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["numpy_rng"] = np.random.get_state()


class NumpyInCheckpointHarness(TinyLightningHarness):
    module_class = NumpyStateModule
