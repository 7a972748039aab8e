"""Mutant: the validation sampler is not resumed.

Bug class: validation data iterators that restart after a resume (Megatron-style
``eval_iters`` walking through the validation set). The validation slice is chosen by a
counter of validations run in this process instead of one derived from the restored
step, so the first validation after the resume evaluates the slice of the first
validation again. Caught by ``val_loss`` at the first validation after the resume.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "val_loss"
EXPECTED_CAUSE = "val_data_not_resumed"
BUG_CLASS = "validation sampler not resumed"
# Its bug acts only on a resume: in one uninterrupted process the counter is the number of
# validations before this one, as the default spec derives it from the step, so its
# continuous run is the default spec's (self-test reuses it).
SHARES_REFERENCE = "../tiny_lightning.py"


class ProcessCountedValidationModule(TinyRegressionModule):
    validations_run = 0

    def validation_position(self) -> int:
        position = self.validations_run  # the bug: counts from 0 in every process
        self.validations_run += 1
        return position


class ValSamplerNotResumedHarness(TinyLightningHarness):
    module_class = ProcessCountedValidationModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "val_sampler_not_resumed")
        super().__init__(root_dir, **kwargs)
