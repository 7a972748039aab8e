"""Doctor pattern ``rng-not-saved``: dropout, and no callback saving every rank's RNG."""

import lightning.pytorch as pl

from harness_specs.tiny_lightning import TinyLightningHarness

EXPECTED = "rng-not-saved"


class NoRngCallback(pl.Callback):
    def __init__(self, seed: int) -> None:
        super().__init__()


class NoRngHarness(TinyLightningHarness):
    rng_callback_class = NoRngCallback
