"""A world-size bug: the elastic spec, but each rank keeps 4 samples per step whatever the
world size, so resuming 2 ranks as 1 halves the global batch (and the LR schedule then
covers other samples). It declares world-size support all the same."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

import harness_specs.tiny_lightning as tiny
from harness_specs.elastic_lightning import ElasticDataModule, ElasticLightningHarness
from workers.kit import ResumableLoader


class PerRankBatchDataModule(ElasticDataModule):
    def train_dataloader(self) -> DataLoader:
        return ResumableLoader(self.train_set, batch_size=4, seed=tiny.SEED, drop_last=True)


class PerRankBatchHarness(ElasticLightningHarness):
    datamodule_class = PerRankBatchDataModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "elastic_per_rank_batch")
        super().__init__(root_dir, **kwargs)
