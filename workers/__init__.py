"""The torchrun side of stop-and-go: harness base class, callbacks, metrics, entry points.

A BioNeMo harness ports by changing its imports to ``from workers import ...``. The
resumability kit (``workers.kit``: ``ResumableLoader``, ``RngStateCallback``, ...) makes a
plain Lightning setup resume exactly.
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
from workers.kit import (
    ResumableLoader,
    ResumableSampler,
    RngStateCallback,
    RotatingValSampler,
    WithSampleIds,
    consumed_samples,
    validations_before,
)
from workers.metrics import MetricsDict, MetricsFn, get_global_step, get_learning_rate

__all__ = [
    "MetadataSaveCallback",
    "MetricsDict",
    "MetricsFn",
    "MetricsTrajectoryCallback",
    "Mode",
    "RaiseAfterMetadataCallback",
    "ResumableLoader",
    "ResumableSampler",
    "ResumeMismatchError",
    "RngStateCallback",
    "RotatingValSampler",
    "StopAndGoException",
    "StopAndGoHarness",
    "TestCheckpointIntegrityCallback",
    "WithSampleIds",
    "consumed_samples",
    "get_global_step",
    "get_learning_rate",
    "torchrun_trainer_kwargs",
    "validations_before",
]
