"""Mutant: augmentation noise drawn in data-loader workers does not resume.

Bug class: per-sample randomness from the global torch RNG in a dataset's ``__getitem__``
(as torchvision's random transforms draw), with ``num_workers > 0``. Each worker seeds its
generators when it starts; the loader's state (torchdata's ``StatefulDataLoader``) holds
the position, not the workers' generators, so after a mid-epoch resume the worker draws
the epoch's first noise again, for other samples. Caught by the data ledger
(``sample_ledger``): the continuous run's sample ids, different tensors, at the first step
after the resume. The kit's ``WorkerRngState`` is the fix (``tests/test_kit.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from harness_specs.tiny_lightning import BATCH_SIZE, SEED, SyntheticRegression, TinyDataModule, TinyLightningHarness
from workers.kit import ResumableLoader

CAUGHT_BY = "sample_ledger"
EXPECTED_CAUSE = "data_pipeline_rng"
BUG_CLASS = "augmentation noise drawn in loader workers (num_workers>0) restarts after a resume"
NOISE = 0.05


class NoisyRegression(SyntheticRegression):
    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        # The bug: noise from the worker's global RNG, which no checkpoint carries.
        return {**item, "x": item["x"] + NOISE * torch.randn_like(item["x"])}


class NoisyDataModule(TinyDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.train_set = NoisyRegression(len(self.train_set), seed=SEED)

    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(self.train_set, batch_size=BATCH_SIZE, seed=SEED, drop_last=True, num_workers=1)


class WorkerAugmentationNoiseHarness(TinyLightningHarness):
    datamodule_class = NoisyDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "worker_augmentation_noise")
        super().__init__(root_dir, **kwargs)
