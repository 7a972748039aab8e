"""Test spec: the default spec, but checkpoints only at epoch ends (no per-step checkpoints).

The default stop must still find its checkpoint (the end of epoch 0) without --kill-at.
The resume from it is then judged as it is: on Lightning 2.6 the resumed fit loop counts
the finished epoch again (``epoch_progress.processed``) and calls ``set_epoch(2)`` for
epoch 1, so the resumed epoch shuffles another permutation than the uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from harness_specs.tiny_lightning import TinyLightningHarness


class EpochEndCheckpointHarness(TinyLightningHarness):
    def checkpoint_callback(self) -> pl.Callback:
        return ModelCheckpoint(
            dirpath=Path(self.checkpoint_dir),
            save_last=True,
            save_top_k=-1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
        )
