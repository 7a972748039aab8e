"""The default spec with a 1024-wide MLP: ~1.1M parameters, ~17 MB of state per rank.

Weights, Adam's two moments and the EMA buffer are four times the 4 MB a rank that the
per-step state dumps were once capped at: above it, a correct run at 3 ranks was judged
bit for bit and failed on gloo's summation order. It must verify at 3 and 4 ranks (the suite runs 3).
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch import nn

from harness_specs.tiny_lightning import FEATURES, TinyLightningHarness, TinyRegressionModule

WIDTH = 1024


class WideRegressionModule(TinyRegressionModule):
    """The default spec's model, 1024 units wide."""

    def __init__(self) -> None:
        pl.LightningModule.__init__(self)
        layers = [nn.Linear(FEATURES, WIDTH), nn.Tanh(), nn.Dropout(0.1), nn.Linear(WIDTH, WIDTH), nn.Tanh()]
        self.net = nn.Sequential(*layers, nn.Linear(WIDTH, 1))
        self.register_ema_buffer()


class WideMlpHarness(TinyLightningHarness):
    """The default scenario on the wide model."""

    module_class = WideRegressionModule

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("exp_name", "wide_mlp")
        super().__init__(*args, **kwargs)
