"""``NeMo2StopAndGoHarness``: the seed's base class shape on the ``nemo2`` backend.

A BioNeMo ``StopAndGoHarness`` subclass ports by importing this class instead of
BioNeMo's: ``setup_model`` returns ``(model, data, nl.MegatronOptimizerModule)`` and
``setup_trainer_and_strategy`` builds an ``nl.Trainer`` with ``nl.MegatronStrategy`` and
``callbacks=self.get_callbacks(mode)``, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.backends.nemo2.backend import NeMo2Backend
from workers.harness import StopAndGoHarness
from workers.metrics import MetricsFn


class NeMo2StopAndGoHarness(StopAndGoHarness):
    """A ``StopAndGoHarness`` that trains through ``llm.train``, holding the seed's ``nemo_logger``.

    The logger writes to ``root_dir / exp_name`` (no version folder), so NeMo's checkpoints
    land in ``checkpoint_dir`` (``root_dir / exp_name / "checkpoints"``), where the harness
    and ``AutoResume`` both look. To use another logger, override ``make_nemo_logger``.
    """

    backend: NeMo2Backend = NeMo2Backend()

    def __init__(
        self,
        root_dir: Path | str = Path("./stop_and_go"),
        val_check_interval: int = 2,
        exp_name: str = "stop_and_go_harness",
        extra_metrics_dict: dict[str, MetricsFn] | None = None,
    ) -> None:
        super().__init__(root_dir, val_check_interval, exp_name, extra_metrics_dict)
        self.nemo_logger = self.make_nemo_logger()
        # Per instance: the backend's fit passes this harness's logger to llm.train.
        self.backend = NeMo2Backend(nemo_logger=self.nemo_logger)

    def make_nemo_logger(self) -> Any:
        """The seed's ``NeMoLogger``: no TensorBoard, no W&B, no checkpoint config of its own."""
        from nemo.lightning import NeMoLogger

        return NeMoLogger(
            log_dir=str(self.root_dir),
            name=self.exp_name,
            use_datetime_version=False,
            version=None,
            tensorboard=None,
            wandb=None,
            ckpt=None,
        )
