"""Test spec: the default spec whose resumed run validates at every step, not every second.

The resume keeps every validation of the uninterrupted run (steps 4, 6, 8 ...) and only
adds some (3, 5, 7 ...): the check in the other direction (what go recorded and the
reference did not) must fail it.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from harness_specs.tiny_lightning import TinyLightningHarness
from workers import Mode


class ExtraValidationsHarness(TinyLightningHarness):
    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "extra_validations")
        super().__init__(root_dir, **kwargs)

    def setup_trainer_and_strategy(self, mode: Mode, metrics_getter: dict[str, Any]) -> pl.Trainer:
        if mode == Mode.RESUME:
            self.val_check_interval = 1
        return super().setup_trainer_and_strategy(mode, metrics_getter)
