"""Mutant: the train sampler restarts at sample 0 although the loader's state was restored.

Bug class: Megatron-Bridge PR 3503. Lightning restores the train loader's state from the
checkpoint, but the sampler drops the position it is handed, so the resumed run trains
the epoch's first batches a second time. Caught by the data ledger (``sample_ledger``):
the first sample go trains was already trained by stop.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, TinyDataModule, TinyLightningHarness
from workers.kit import ResumableLoader, ResumableSampler

CAUGHT_BY = "sample_ledger"
EXPECTED_CAUSE = "sampler_restart"
BUG_CLASS = "sampler restarts at sample 0 though its state was restored (Megatron-Bridge PR 3503)"
# Its bug acts only on a resume: its continuous run is the default spec's (self-test reuses it).
SHARES_REFERENCE = "../tiny_lightning.py"


class RestartingSampler(ResumableSampler):
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the bug: the restored position is not passed on


class RestartingDataModule(TinyDataModule):
    def train_dataloader(self) -> DataLoader:
        sampler = RestartingSampler(self.train_set, seed=SEED, drop_last=True)
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, sampler=sampler, drop_last=True)


class SamplerRestartHarness(TinyLightningHarness):
    datamodule_class = RestartingDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "sampler_restart")
        super().__init__(root_dir, **kwargs)
