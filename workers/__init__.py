"""The torchrun side of stop-and-go: harness base class, callbacks, metrics, entry points.

A BioNeMo harness ports by changing its imports to ``from workers import ...``.
"""

from workers.callbacks import (
    MetadataSaveCallback,
    MetricsTrajectoryCallback,
    RaiseAfterMetadataCallback,
    ResumeMismatchError,
    StopAndGoException,
    TestCheckpointIntegrityCallback,
)
from workers.harness import Mode, StopAndGoHarness, torchrun_trainer_kwargs
from workers.metrics import MetricsDict, MetricsFn, get_global_step, get_learning_rate

__all__ = [
    "MetadataSaveCallback",
    "MetricsDict",
    "MetricsFn",
    "MetricsTrajectoryCallback",
    "Mode",
    "RaiseAfterMetadataCallback",
    "ResumeMismatchError",
    "StopAndGoException",
    "StopAndGoHarness",
    "TestCheckpointIntegrityCallback",
    "get_global_step",
    "get_learning_rate",
    "torchrun_trainer_kwargs",
]
