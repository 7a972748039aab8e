"""Built-in metric functions and the conversion of metric values to JSON.

A metric function has the seed's signature ``fn(trainer, module) -> value``; values are
converted with ``to_jsonable`` before they cross the process boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import lightning.pytorch as pl
import torch

MetricsFn = Callable[[pl.Trainer, pl.LightningModule], Any]
"""A metrics producing function: ``fn(trainer, module) -> value``."""


class MetricsDict(TypedDict):
    """The default metrics dict."""

    global_step: MetricsFn
    learning_rate: MetricsFn


def get_global_step(trainer: pl.Trainer, model: pl.LightningModule) -> Any:
    """The trainer's global step (optimizer steps taken)."""
    return trainer.global_step


def get_learning_rate(trainer: pl.Trainer, model: pl.LightningModule) -> Any:
    """The learning rate of the first param group of the first optimizer (as in the seed)."""
    return trainer.optimizers[0].param_groups[0]["lr"]


def to_jsonable(value: Any) -> Any:
    """Converts a metric value to plain JSON types (tensors become numbers or lists)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    # numpy scalars and arrays, without importing numpy here.
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    return repr(value)


def collect_metrics(
    metrics_getter: Mapping[str, MetricsFn], trainer: pl.Trainer, module: pl.LightningModule
) -> dict[str, Any]:
    """Evaluates every metric function and returns JSON-ready values by name."""
    return {name: to_jsonable(fn(trainer, module)) for name, fn in metrics_getter.items()}
