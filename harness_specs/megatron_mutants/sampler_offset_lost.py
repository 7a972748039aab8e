"""Mutant: the train sampler restarts at sample 0 although consumed samples were restored.

Bug class: Megatron-Bridge PR 3503. The consumed-sample count comes back from the dist
checkpoint's common state, but the sampler is built without it, so the resumed run
trains the epoch's first batches a second time. Caught by the data ledger
(``sample_ledger``): the first sample go trains was already trained by stop.
"""

from __future__ import annotations

from typing import Any

from harness_specs.megatron_gpt_tiny import MegatronGPTTinyHarness, TinyTokenDataModule
from workers.kit import ResumableSampler

CAUGHT_BY = "sample_ledger"
EXPECTED_CAUSE = "sampler_restart"
BUG_CLASS = "sampler offset lost on resume (Megatron-Bridge PR 3503)"


class OffsetLosingDataModule(TinyTokenDataModule):
    def train_sampler(self, consumed: int) -> ResumableSampler:
        return super().train_sampler(0)  # the bug: the restored count is not passed on


class SamplerOffsetLostHarness(MegatronGPTTinyHarness):
    datamodule_class = OffsetLosingDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "sampler_offset_lost")
        super().__init__(root_dir, **kwargs)
