"""The torchrun side of stop-and-go: harness base class, callbacks, metrics, entry points.

A BioNeMo harness ports by changing its imports to ``from workers import ...``. The
resumability kit (``workers.kit``: ``ResumableLoader``, ``RngStateCallback``, ...) makes a
plain Lightning setup resume exactly.

The names are imported on first use (PEP 562): a plain PyTorch script run by
``stop-and-go run`` imports ``workers`` submodules without pulling in Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "MetadataSaveCallback": "workers.callbacks",
    "MetricsTrajectoryCallback": "workers.callbacks",
    "RaiseAfterMetadataCallback": "workers.callbacks",
    "ResumeMismatchError": "workers.callbacks",
    "StopAndGoException": "workers.callbacks",
    "TestCheckpointIntegrityCallback": "workers.callbacks",
    "Mode": "workers.harness",
    "StopAndGoHarness": "workers.harness",
    "torchrun_trainer_kwargs": "workers.harness",
    "ResumableLoader": "workers.kit",
    "ResumableSampler": "workers.kit",
    "RngStateCallback": "workers.kit",
    "RotatingValSampler": "workers.kit",
    "WithSampleIds": "workers.kit",
    "consumed_samples": "workers.kit",
    "validations_before": "workers.kit",
    "MetricsDict": "workers.metrics",
    "MetricsFn": "workers.metrics",
    "get_global_step": "workers.metrics",
    "get_learning_rate": "workers.metrics",
}

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
