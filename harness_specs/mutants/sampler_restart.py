"""Mutant: the train sampler restarts at sample 0 although consumed samples were restored.

Bug class: Megatron-Bridge PR 3503. The module's consumed-sample count is restored from
the checkpoint, but the sampler is built without it, so the resumed run trains the
epoch's first batches a second time. Caught by the data ledger (``sample_ledger``): the
first sample go trains was already trained by stop.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DistributedSampler

from harness_specs.tiny_lightning import TinyDataModule, TinyLightningHarness

CAUGHT_BY = "sample_ledger"
BUG_CLASS = "sampler restarts at sample 0 though consumed samples were restored (Megatron-Bridge PR 3503)"


class RestartingDataModule(TinyDataModule):
    def train_sampler(self, consumed: int) -> DistributedSampler:
        return super().train_sampler(0)  # the bug: the restored count is not passed on


class SamplerRestartHarness(TinyLightningHarness):
    datamodule_class = RestartingDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "sampler_restart")
        super().__init__(root_dir, **kwargs)
