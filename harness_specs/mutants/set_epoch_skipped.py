"""Mutant: a sampler skips ``set_epoch`` after a restore and never clears that flag.

Bug class: epoch replay. The sampler ignores the ``set_epoch`` Lightning calls right after
the restore (so it keeps the restored position), with a flag it never clears, so every
later ``set_epoch`` is ignored too: the epoch after the resume replays epoch 0's order.
Its train set has 32 samples (8 steps an epoch on one rank), so the bug shows at step 9 of
the 12. Caught by the data ledger (``sample_ledger``) at step 9; the sampler's state shows
epoch 0 where the reference's has epoch 1.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, SyntheticRegression, TinyDataModule, TinyLightningHarness
from workers.kit import ResumableLoader, ResumableSampler

CAUGHT_BY = "sample_ledger"
EXPECTED_CAUSE = "epoch_replay"
BUG_CLASS = "sampler skips set_epoch after a restore and never clears the flag (epoch replay)"
SHORT_EPOCH_SAMPLES = 32


class SkippingSetEpochSampler(ResumableSampler):
    restored = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.restored = True  # skip the set_epoch that follows the restore

    def set_epoch(self, epoch: int) -> None:
        if self.restored:  # the bug: never cleared, so every later epoch is skipped too
            return
        super().set_epoch(epoch)


class ShortEpochDataModule(TinyDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.train_set = SyntheticRegression(SHORT_EPOCH_SAMPLES, seed=SEED)

    def train_dataloader(self) -> DataLoader:
        sampler = SkippingSetEpochSampler(self.train_set, seed=SEED, drop_last=True)
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, sampler=sampler, drop_last=True)


class SetEpochSkippedHarness(TinyLightningHarness):
    datamodule_class = ShortEpochDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "set_epoch_skipped")
        super().__init__(root_dir, **kwargs)
