"""Mutant: the validation cadence shifts after a resume.

Bug class: Lightning issue 20277 (validation runs at other steps after resuming). The
resumed run's batch counter within the epoch is restored one batch ahead, so validation,
which Lightning schedules by that counter, falls on steps 3, 5, 7 instead of 4, 6, 8.
Caught by ``val_loss``: the resumed run has no validation at step 4.
"""

from __future__ import annotations

from typing import Any

from harness_specs.tiny_lightning import TinyLightningHarness, TinyRegressionModule

CAUGHT_BY = "val_loss"
EXPECTED_CAUSE = "val_cadence_shift"
BUG_CLASS = "validation cadence shifted after a resume (Lightning 20277)"
# Its bug acts only on a resume: its continuous run is the default spec's (self-test reuses it).
SHARES_REFERENCE = "../tiny_lightning.py"


class ShiftedCadenceModule(TinyRegressionModule):
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        current = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
        for key in current:  # the bug: the in-epoch batch counter comes back one ahead
            current[key] += 1


class ValCadenceShiftHarness(TinyLightningHarness):
    module_class = ShiftedCadenceModule

    def __init__(self, root_dir: Any = "./stop_and_go", **kwargs: Any) -> None:
        kwargs.setdefault("exp_name", "val_cadence_shift")
        super().__init__(root_dir, **kwargs)
