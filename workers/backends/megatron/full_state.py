"""Metrics of the *full* (tensor-parallel-gathered) weights and optimizer state.

With tensor parallelism each rank holds a shard of every tensor-parallel parameter
(``param.tensor_model_parallel``, split along ``param.partition_dim``), so the built-in
``weights_digest`` / ``optimizer_state_digest`` (and their norms) describe a rank's shard:
across TP sizes they cannot match, even when the model is the same. These metrics gather
every sharded tensor over the tensor-parallel group first, so they describe the full
tensors and do not depend on the TP size: a checkpoint written with TP=2 and loaded with
TP=1 (``dist_checkpointing`` resharding) must give the same ``full_weights_digest`` and
``full_optimizer_state_digest`` at the resume point, bit for bit.

They are collectives over the tensor-parallel group (nothing to gather at TP=1): every
rank computes them at the same points, which the harness's metric callbacks do. Scopes
for a change of world size: ``FULL_STATE_SCOPES``.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import torch
from megatron.core import parallel_state

from workers.metrics import MetricsFn, tensor_digest, tensor_norm

FULL_STATE_SCOPES = {
    "full_weights_digest": "state",
    "full_weights_norm": "norm",
    "full_optimizer_state_digest": "state",
    "full_optimizer_state_norm": "norm",
}
"""The scopes of these metrics (``orchestrator.judge.metric_scopes``): TP-independent state."""

SHARD_LOCAL_METRICS = ("weights_digest", "weights_norm", "optimizer_state_digest", "optimizer_state_norm")
"""Built-in metrics that see only this rank's shards under TP: per rank when TP changes."""


def gather_tensor_parallel(tensor: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``tensor`` (the parameter ``param`` or a state shaped like it) gathered over the TP group.

    Raises:
        ValueError: for a strided partition (``partition_stride != 1``), which a plain
            concatenation would put in the wrong order.
    """
    world = parallel_state.get_tensor_model_parallel_world_size()
    if world == 1 or not getattr(param, "tensor_model_parallel", False):
        return tensor.detach()
    if getattr(param, "partition_stride", 1) != 1:
        raise ValueError(f"cannot gather a strided tensor-parallel partition (stride {param.partition_stride})")
    local = tensor.detach().contiguous()
    parts = [torch.empty_like(local) for _ in range(world)]
    torch.distributed.all_gather(parts, local, group=parallel_state.get_tensor_model_parallel_group())
    return torch.cat(parts, dim=param.partition_dim)


def full_weights(module: pl.LightningModule) -> Iterator[torch.Tensor]:
    """Every parameter, full (gathered over TP), in parameter order."""
    for param in module.parameters():
        yield gather_tensor_parallel(param, param)


def full_optimizer_state(trainer: pl.Trainer) -> Iterator[torch.Tensor]:
    """Every optimizer's per-parameter state, full, in the order of the built-in metric."""
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            for param in group["params"]:
                state = optimizer.state.get(param, {})
                for key in sorted(state):
                    value = state[key]
                    if not isinstance(value, torch.Tensor):
                        yield torch.tensor(float(value))
                    elif value.shape == param.shape:
                        yield gather_tensor_parallel(value, param)
                    else:  # scalars such as Adam's ``step``: the same on every TP rank
                        yield value.detach()


def get_full_weights_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """Metric: a digest of the full weights (the same for any TP size)."""
    return tensor_digest(full_weights(module))


def get_full_weights_norm(trainer: pl.Trainer, module: pl.LightningModule) -> float:
    """Metric: the L2 norm of the full weights."""
    return tensor_norm(full_weights(module))


def get_full_optimizer_state_digest(trainer: pl.Trainer, module: pl.LightningModule) -> str:
    """Metric: a digest of the full optimizer state (moments gathered over TP, step counts)."""
    return tensor_digest(full_optimizer_state(trainer))


def get_full_optimizer_state_norm(trainer: pl.Trainer, module: pl.LightningModule) -> float:
    """Metric: the L2 norm of the full optimizer state."""
    return tensor_norm(full_optimizer_state(trainer))


def full_state_metrics() -> dict[str, MetricsFn]:
    """The four metrics by name, for a harness's ``extra_metrics_dict``."""
    return {
        "full_weights_digest": get_full_weights_digest,
        "full_weights_norm": get_full_weights_norm,
        "full_optimizer_state_digest": get_full_optimizer_state_digest,
        "full_optimizer_state_norm": get_full_optimizer_state_norm,
    }
