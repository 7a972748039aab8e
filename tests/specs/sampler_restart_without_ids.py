"""Test spec: the sampler-restart mutant with batches that carry no sample ids.

Its batches hold only ``x`` and ``y``; the ledger identifies samples by a content hash of
each row, so the samples go trains a second time are still caught (``sample_ledger``).
"""

from __future__ import annotations

from typing import Any

from harness_specs.mutants.sampler_restart import RestartingDataModule, SamplerRestartHarness
from harness_specs.tiny_lightning import SEED, TRAIN_SAMPLES, SyntheticRegression


class AnonymousRegression(SyntheticRegression):
    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"x": self.x[index], "y": self.y[index]}  # no "idx"


class AnonymousDataModule(RestartingDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.train_set = AnonymousRegression(TRAIN_SAMPLES, seed=SEED)


class SamplerRestartWithoutIdsHarness(SamplerRestartHarness):
    datamodule_class = AnonymousDataModule
