"""Dumps of the state tensors after each step, for the numerically aware state check.

``orchestrator.judge.state_compare`` re-judges a ``*_digest`` that differs from the
reference per tensor; it needs the tensors themselves. Each rank writes, after every
optimizer step, its parameters, buffers and optimizer moments as one ``.npz`` (float32,
bfloat16 widened), skipped when larger than the cap (``STOP_AND_GO_STATE_DUMP_BYTES``).
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import numpy as np
import torch

from orchestrator.judge.state_compare import state_dump_limit, state_dump_path


def _array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16 or tensor.dtype == torch.float16:
        tensor = tensor.float()
    return tensor.numpy()


def state_arrays(trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, np.ndarray]:
    """The rank's state tensors by name: ``weights/``, ``buffers/`` and ``optimizer/`` ones."""
    arrays = {f"weights/{name}": _array(p) for name, p in module.named_parameters()}
    arrays.update({f"buffers/{name}": _array(b) for name, b in module.named_buffers()})
    names = {id(p): name for name, p in module.named_parameters()}
    for i, optimizer in enumerate(trainer.optimizers):
        for group in optimizer.param_groups:
            for j, param in enumerate(group["params"]):
                for key, value in sorted(optimizer.state.get(param, {}).items()):
                    if isinstance(value, torch.Tensor) and value.is_floating_point():
                        arrays[f"optimizer/{i}.{names.get(id(param), j)}.{key}"] = _array(value)
    return arrays


def dump_state(
    metadata_dir: str | os.PathLike[str], phase: str, trainer: pl.Trainer, module: pl.LightningModule
) -> None:
    """Writes this rank's state after the current step, unless dumps are off or too big."""
    limit = state_dump_limit()
    if limit <= 0:
        return
    arrays = state_arrays(trainer, module)
    if sum(a.nbytes for a in arrays.values()) > limit:
        return
    path = state_dump_path(metadata_dir, phase, trainer.global_rank, trainer.global_step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
