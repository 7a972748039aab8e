"""Doctor pattern ``epoch-end-checkpoints-only``: a ModelCheckpoint saving at epoch ends, a mid-epoch stop."""

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from harness_specs.tiny_lightning import TinyLightningHarness

EXPECTED = "epoch-end-checkpoints-only"


class EpochCheckpointHarness(TinyLightningHarness):
    def checkpoint_callback(self) -> pl.Callback:
        return ModelCheckpoint(dirpath=self.checkpoint_dir, save_last=True, save_top_k=-1)
