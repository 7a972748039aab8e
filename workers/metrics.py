"""Built-in metric functions and the conversion of metric values to JSON.

A metric function has the seed's signature ``fn(trainer, module) -> value``; values are
converted with ``to_jsonable`` before they cross the process boundary.

``builtin_metrics()`` lists every built-in metric; the harness records all of them on
every rank, at the resume point and after every step:

- ``global_step``, ``learning_rate`` (the seed's two), ``learning_rates`` (every param
  group of every optimizer) and ``optimizer_hparams`` (momentum, betas, dampening);
- ``lr_scheduler_state``: every scheduler's state (``last_epoch``, ``_step_count``, ...);
- ``weights_digest``/``weights_norm`` (parameters), ``buffers_digest``/``buffers_norm``
  (buffers such as EMA weights or BatchNorm statistics), ``optimizer_state_digest``/
  ``optimizer_state_norm`` (per-parameter moments): a digest proves equality, the norm
  says how far apart two states are when the digests differ. Both are computed on the
  tensors' device (``workers.record.fingerprint``): over every byte where a checkpoint is saved
  and where a run resumes, over a fixed sample of each tensor's elements after every
  step (all of a small tensor's), so a step's cost does not grow with the model;
- ``rng_python``, ``rng_numpy``, ``rng_torch`` and, where CUDA is present, ``rng_cuda``:
  digests of the global random generators' states;
- ``grad_scaler_scale``: the AMP grad scaler's scale (``None`` without a scaler);
- evidence for the diagnosis, never a failure by itself (``EVIDENCE_METRICS`` of
  ``orchestrator.judge.compare``): ``module_attributes`` (numeric Python attributes of the
  user's modules and data module, ``workers.record.attributes``) and ``rng_restored``
  (the digests of the RNG states ``workers.kit.RngStateCallback`` restored, or ``None``).

Per-step batch facts (the sample ids and tensor hash of the step's batch, the sampler's
epoch and seed, the gradient-accumulation position) are recorded in the trajectory by
``workers.record.ledger.BatchRecorder``: they describe a batch, which does not exist yet at the
resume point.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch

from workers.record.attributes import module_attributes
from workers.record.fingerprint import DIGEST_CHARS, exact_digest, tensor_digest, tensor_norm
from workers.record.state import optimizer_state

if TYPE_CHECKING:  # the plain PyTorch adapter (workers.plain) uses these metrics without Lightning
    import lightning.pytorch as pl

MetricsFn = Callable[["pl.Trainer", "pl.LightningModule"], Any]
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


# -- model and optimizer state ------------------------------------------------------------
# Digests and norms come from ``workers.record.fingerprint``: computed on the tensors' device, every
# byte at a checkpoint or resume, a bounded sample of each tensor after every step.


def get_weights_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of every parameter: equal only for bit-identical weights."""
    return tensor_digest(module.parameters())


def get_weights_norm(trainer: pl.Trainer, module: pl.LightningModule) -> float:
    """The L2 norm of all parameters."""
    return tensor_norm(module.parameters())


def get_buffers_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of every buffer (EMA weights, BatchNorm running statistics, ...)."""
    return tensor_digest(module.buffers())


def get_buffers_norm(trainer: pl.Trainer, module: pl.LightningModule) -> float:
    """The L2 norm of all floating-point buffers."""
    return tensor_norm(module.buffers())


def _optimizer_state_tensors(trainer: pl.Trainer) -> list[torch.Tensor]:
    # The tensors of ``workers.record.state``'s optimizer group, in the same order.
    return [tensor for _, tensor in optimizer_state(trainer.optimizers)]


def get_optimizer_state_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of every optimizer's per-parameter state (moments and step counts)."""
    return tensor_digest(_optimizer_state_tensors(trainer))


def get_optimizer_state_norm(trainer: pl.Trainer, module: pl.LightningModule) -> float:
    """The L2 norm of every optimizer's per-parameter state."""
    return tensor_norm(_optimizer_state_tensors(trainer))


def learning_rates(optimizers: Iterable[torch.optim.Optimizer]) -> list[float]:
    """The learning rate of every param group of every optimizer, in order."""
    return [_plain(group["lr"]) for optimizer in optimizers for group in optimizer.param_groups]


def get_learning_rates(trainer: pl.Trainer, module: pl.LightningModule) -> list[float]:
    """The learning rate of every param group of every optimizer, in order."""
    return learning_rates(trainer.optimizers)


OPTIMIZER_HPARAMS = ("momentum", "betas", "dampening", "weight_decay")


def optimizer_hparams(optimizers: Iterable[torch.optim.Optimizer]) -> list[dict[str, Any]]:
    """Momentum, betas, dampening and weight decay of every param group (those it has)."""
    return [
        {key: group[key] for key in OPTIMIZER_HPARAMS if key in group}
        for optimizer in optimizers
        for group in optimizer.param_groups
    ]


def get_optimizer_hparams(trainer: pl.Trainer, module: pl.LightningModule) -> list[dict[str, Any]]:
    """Momentum, betas, dampening and weight decay of every param group (those it has)."""
    return optimizer_hparams(trainer.optimizers)


def _plain(value: Any) -> Any:
    """``value`` if it is plain JSON data (numbers, strings, lists, dicts of them), else None."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None for i in items) else items
    if isinstance(value, Mapping):
        items = {str(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None}
    return None


def scheduler_states(schedulers: Iterable[Any]) -> list[dict[str, Any]]:
    """Each LR scheduler's state dict, without functions (``last_epoch``, ``_step_count``, ...)."""
    return [_plain(scheduler.state_dict()) or {} for scheduler in schedulers]


def get_lr_scheduler_state(trainer: pl.Trainer, module: pl.LightningModule) -> list[dict[str, Any]]:
    """Every LR scheduler's state dict, without functions (``last_epoch``, ``_step_count``, ...)."""
    return scheduler_states(config.scheduler for config in trainer.lr_scheduler_configs)


# -- random number generators ---------------------------------------------------------------


def bytes_digest(data: bytes) -> str:
    """A short sha256 of raw bytes."""
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def get_rng_python(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of Python's ``random`` state."""
    return bytes_digest(pickle.dumps(random.getstate()))


def get_rng_numpy(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of numpy's global random state."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return bytes_digest(f"{kind}{pos}{has_gauss}{cached}".encode() + np.asarray(keys).tobytes())


def get_rng_torch(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of torch's CPU generator state."""
    return exact_digest([torch.get_rng_state()])


def get_rng_cuda(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """A digest of every CUDA device's generator state."""
    return exact_digest(torch.cuda.get_rng_state_all())


def rng_digests() -> dict[str, str]:
    """The digests of the global random generators, by metric name (``rng_cuda`` where CUDA is)."""
    digests = {
        "rng_python": get_rng_python(None, None),  # type: ignore[arg-type]
        "rng_numpy": get_rng_numpy(None, None),  # type: ignore[arg-type]
        "rng_torch": get_rng_torch(None, None),  # type: ignore[arg-type]
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        digests["rng_cuda"] = get_rng_cuda(None, None)  # type: ignore[arg-type]
    return digests


def get_grad_scaler_scale(trainer: pl.Trainer, module: pl.LightningModule) -> float | None:
    """The AMP grad scaler's current scale, or None when the run has no scaler."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return None
    return float(scaler.get_scale())


def get_module_attributes(trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, Any]:
    """Numeric Python attributes of the module (submodules included) and the data module."""
    return module_attributes([module], getattr(trainer, "datamodule", None))


def get_rng_restored(trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, str] | None:
    """The RNG digests a callback restored at fit start (``restored_rng_digests``), or None."""
    restored = (getattr(cb, "restored_rng_digests", None) for cb in trainer.callbacks)
    return next((digests for digests in restored if digests), None)


def builtin_metrics() -> dict[str, MetricsFn]:
    """Every built-in metric by name, in report order (``rng_cuda`` only where CUDA is)."""
    metrics: dict[str, MetricsFn] = {
        "global_step": get_global_step,
        "learning_rate": get_learning_rate,
        "learning_rates": get_learning_rates,
        "optimizer_hparams": get_optimizer_hparams,
        "lr_scheduler_state": get_lr_scheduler_state,
        "weights_digest": get_weights_digest,
        "weights_norm": get_weights_norm,
        "buffers_digest": get_buffers_digest,
        "buffers_norm": get_buffers_norm,
        "optimizer_state_digest": get_optimizer_state_digest,
        "optimizer_state_norm": get_optimizer_state_norm,
        "rng_python": get_rng_python,
        "rng_numpy": get_rng_numpy,
        "rng_torch": get_rng_torch,
        "grad_scaler_scale": get_grad_scaler_scale,
        "module_attributes": get_module_attributes,
        "rng_restored": get_rng_restored,
    }
    if torch.cuda.is_available():
        metrics["rng_cuda"] = get_rng_cuda
    return metrics


# -- conversion -------------------------------------------------------------------------------


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
    # numpy scalars and arrays.
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
